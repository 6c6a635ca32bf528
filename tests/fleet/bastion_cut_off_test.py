"""Scenario 5: bastion3 is cut off (its link pulled from the bridge) while a
fleet sequence is burnt on bastion1. On return it must learn of the burn
before the sequence can be used there: a knock the moment its link is back
(before its agent reached the controller again) opens nothing, nor does one
after it reconnected and acknowledged the burn; the audit log has one
knock.opened for the sequence, and the refused knock as a replay."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import Failure, check, log, run_scenario, wait_until  # noqa: E402

CONTROLLER_PORT = 7443


def hold_controller_link(fleet, bastion, held):
    """Drops bastion's packets to the controller's port (a table of the
    bed's, beside sesame's own), so its agent cannot reconnect yet."""
    if held:
        rules = ("add table inet bedhold; "
                 "add chain inet bedhold output { type filter hook output priority filter; }; "
                 f"add rule inet bedhold output ip daddr {fleet.address('ctl')} tcp dport {CONTROLLER_PORT} drop")
        result = fleet.exec_in(bastion, ["nft", rules])
    else:
        result = fleet.exec_in(bastion, ["nft", "delete", "table", "inet", "bedhold"])
    check(result.returncode == 0, f"nft on {bastion}: {result.stderr.strip()}")
    log(f"{bastion}'s agent {'held off' if held else 'free to reach'} the controller")


def connected(fleet, bastion):
    try:
        return fleet.agents()["bastion" + bastion[1]].get("connected", False)
    except Failure:  # sesamectl failed: ask again
        return False


def opened(fleet, sequence):
    return fleet.audit_where("knock.opened", sequence=sequence["id"])


def scenario(fleet):
    [seq] = fleet.issue("openSSH")
    issued_at = fleet.revision()
    _, took = wait_until(lambda: fleet.acked_revision("b3") >= issued_at, 60,
                         "bastion3 acknowledging the new sequence", interval=0.5)
    log(f"bastion3 holds sequence {seq['id']} (revision {issued_at}) after {took:.2f} s")

    # Cut off long enough that both ends give the session up: on return
    # bastion3 must learn of the burn from a new session, not from the
    # retransmission of a delta.
    fleet.set_link("b3", False)
    _, took = wait_until(lambda: not connected(fleet, "b3"), 120, "the controller noticing bastion3 is gone",
                         interval=1)
    log(f"the controller lists bastion3 as disconnected {took:.2f} s after its link went down")

    fleet.knock("c1", "b1", seq)
    fleet.wait_open("c1", "b1")
    [grant] = [g for g in fleet.grants() if g.get("sequence_id") == seq["id"]]
    burnt_at = int(grant.get("revision", 0)) or fleet.revision()
    log(f"sequence {seq['id']} burnt on bastion1 at revision {burnt_at}")

    # Back on the bridge, and knocked at once, while its agent still cannot
    # reach the controller.
    hold_controller_link(fleet, "b3", True)
    fleet.set_link("b3", True)
    fleet.knock("c1", "b3", seq)
    fleet.check_shut("c1", "b3", 3, "a sequence burnt on bastion1 opened bastion3 before its agent reconnected")
    check(not connected(fleet, "b3"), "bastion3 reconnected although its way to the controller was held")
    hold_controller_link(fleet, "b3", False)

    fleet.wait_connected(["b3"])
    _, took = wait_until(lambda: fleet.acked_revision("b3") >= burnt_at, 60,
                         f"bastion3 acknowledging revision {burnt_at}", interval=0.5)
    log(f"bastion3 acknowledged the burn {took:.2f} s after reconnecting")
    fleet.check_shut("c1", "b3", 5, "a sequence burnt on bastion1 opened bastion3 after it reconnected")

    # The knock made while it was away reaches the controller with the
    # session: refused as a replay, which the audit log says.
    replays, took = wait_until(lambda: fleet.audit_where("knock.replay", sequence=seq["id"]), 60,
                               "the knock on bastion3 reaching the audit log as a replay", interval=0.5)
    check(all(r.get("where") == "agent:bastion3" for r in replays), f"replay records from elsewhere: {replays}")
    log(f"the knock on bastion3 is audited as a replay ({len(replays)} record(s))")

    # Knocked again now that it knows.
    fleet.knock("c1", "b3", seq)
    fleet.check_shut("c1", "b3", 5, "a sequence burnt on bastion1 opened bastion3 after it acknowledged the burn")

    records = opened(fleet, seq)
    check(len(records) == 1, f"{len(records)} knock.opened records for sequence {seq['id']}: {records}")
    check(records[0].get("where") == "agent:bastion1", f"sequence {seq['id']} opened at {records[0].get('where')}")
    s = fleet.sequences().get(seq["id"], {})
    check(s.get("state") == "burnt" and s.get("consumed_by") == "bastion1",
          f"sequence {seq['id']}: {s}")
    check(not [g for g in fleet.grants() if g.get("agent") == "bastion3"], "a grant is open on bastion3")


run_scenario(scenario)
