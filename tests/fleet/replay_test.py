"""Scenario 2: replay. An operator's sequence is knocked once on bastion1
from c1 and opens; once that grant has closed, the same sequence is knocked
again on b1 and on b2, from c1 and from c2. None of the four replays gets
access, each one is audited by the controller as knock.replay (where it was
knocked, by whom, first used on bastion1), the sequence opened exactly once,
and `sesamectl audit verify` passes over the whole log.

b1 recognises the replay because its matcher keeps the spent sequence
watched after the completion; b2 because it keeps it watched after the
controller's burn (agent/managed/managed_matcher.h, "Replay watch")."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import AGENT_NAME, check, log, run_scenario, wait_until  # noqa: E402

REPLAYS = (("b1", "c1"), ("b1", "c2"), ("b2", "c1"), ("b2", "c2"))


def grants_of(fleet, sequence):
    """Every grant (open or not) the sequence's consumption ordered."""
    [response] = fleet.sesamectl_json("grants", "list", "--all")
    return [g for g in response.get("grants", []) if int(g.get("sequence_id", 0)) == sequence["id"]]


def scenario(fleet):
    [seq] = fleet.issue("openSSH", for_name="alice")
    fleet.wait_synced()
    fleet.knock("c1", "b1", seq)
    fleet.wait_open("c1", "b1")
    [opened] = fleet.audit_where("knock.opened", sequence=seq["id"])
    check(opened.get("where") == f"agent:{AGENT_NAME['b1']}", f"the first knock was audited elsewhere: {opened}")
    # The original grant closes on its own (TTL 8 s): any access seen from
    # now on would come from a replay.
    fleet.wait_closed("c1", "b1", timeout=60)

    for bastion, client in REPLAYS:
        fleet.knock(client, bastion, seq)
        log(f"replayed sequence {seq['id']} on {bastion} from {client}")

    def replays():
        records = fleet.audit_where("knock.replay", sequence=seq["id"])
        return records if len(records) >= len(REPLAYS) else None

    records, took = wait_until(replays, 30, f"{len(REPLAYS)} knock.replay records for sequence {seq['id']}",
                               interval=0.2)
    log(f"{len(records)} replays audited within {took:.2f} s of the last knock")
    seen = sorted((r.get("where"), r.get("who")) for r in records)
    want = sorted((f"agent:{AGENT_NAME[b]}", fleet.address(c)) for b, c in REPLAYS)
    check(seen == want, f"knock.replay records (where, who): {seen}, expected {want}")
    for r in records:
        check(r.get("details", {}).get("first_agent") == AGENT_NAME["b1"],
              f"a replay record does not name the first bastion: {r}")

    # No access anywhere, for anyone.
    for bastion, client in REPLAYS:
        check(not fleet.can_connect(client, bastion), f"the replay from {client} opened {bastion}:22")
    check(len(fleet.audit_where("knock.opened", sequence=seq["id"])) == 1, "the sequence opened more than once")
    grants = grants_of(fleet, seq)
    check(len(grants) == 1, f"{len(grants)} grants for the sequence, expected the first knock's only: {grants}")
    check(grants[0].get("address") == fleet.address("c1"), f"the grant is not the first knock's: {grants[0]}")

    # The agents said so too (their log), and the chain is intact.
    for bastion in ("b1", "b2"):
        with open(os.path.join(fleet.run_dir, f"{bastion}-agent.log"), errors="replace") as f:
            lines = [line for line in f if f"sequence {seq['id']} knocked again after it was spent" in line]
        check(len(lines) == 2, f"{bastion}'s agent logged {len(lines)} replays of the sequence, expected 2")
    verify = fleet.sesamectl("audit", "verify")
    log(f"audit verify: {verify.stdout.strip().splitlines()[-1] if verify.stdout.strip() else 'ok'}")


run_scenario(scenario)
