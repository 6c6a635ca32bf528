"""Issue 13: a port sweep forged with an engineer's address does not lock
the engineer out, of the swept bastion or of any other.

c2 sweeps every TCP, then every UDP port of b1 with c1's address as the
source (knockgen raw frames from c2's eth0, 20,000 ports/s). While the
sweep runs, once b1 has flagged c1 as a scanner, c1 knocks b2 and gets in:
b2 is not affected at all. When the sweep ends, c1 knocks b1 with a fresh
one-time sequence and gets in within seconds. The scanner is still
reported: b1's log and the audit (from bastion1 only) have it. And the
report does not lock c1 out fleet-wide through the controller: once the
controller has recorded it, c1's fleet-wide knock on b3 opens every
bastion, b1 included."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import AGENT_NAME, BASTIONS, Failure, check, log, run_scenario, wait_until  # noqa: E402


def agent_log(fleet, bastion):
    with open(os.path.join(fleet.run_dir, f"{bastion}-agent.log"), errors="replace") as f:
        return f.read()


class ForgedSweep(threading.Thread):
    """knockgen sweeps from `sender` to `bastion`, every TCP then every UDP
    port, with `forged` as the source address (each sweep bounded by
    knockgen's --max-seconds)."""

    def __init__(self, fleet, sender, bastion, forged):
        super().__init__(daemon=True)
        self.fleet, self.sender, self.bastion, self.forged = fleet, sender, bastion, forged
        self.outputs, self.error = [], None

    def run(self):
        try:
            for protocol in ("tcp", "udp"):
                self.outputs.append(self.fleet.knockgen(self.sender, self.bastion, "sweep", "--src", self.forged,
                                                        "--rate", "20000", "--protocol", protocol, max_seconds=60))
        except Exception as e:  # reported by the scenario after join()
            self.error = e


def scanner_records(fleet, who, since):
    return [r for r in fleet.audit()[since:] if r["what"] == "scanner.seen" and r["who"] == who]


def scenario(fleet):
    c1, c2 = fleet.address("c1"), fleet.address("c2")
    for_b1, for_b2 = fleet.issue("openSSH", count=2)
    [fleet_wide] = fleet.issue("fleetSSH")
    fleet.wait_synced()
    audit_before = len(fleet.audit())

    sweep = ForgedSweep(fleet, "c2", "b1", c1)
    sweep.start()
    # b1 takes c1 for a scanner (the sweep carries c1's address)...
    _, took = wait_until(lambda: f"{c1}: knocks like a scanner" in agent_log(fleet, "b1") or not sweep.is_alive(),
                         30, f"bastion1 flagging {c1} as a scanner")
    check(sweep.is_alive(), f"the sweep ended before bastion1 flagged {c1}: {sweep.outputs} {sweep.error}")
    log(f"bastion1 flagged {c1} {took:.2f} s into the sweep")
    # ...and b2 does not care: c1 knocks b2 during the sweep and gets in.
    fleet.knock("c1", "b2", for_b2)
    check(sweep.is_alive(), "the sweep ended before c1 knocked bastion2: the scenario did not test what it says")
    fleet.wait_open("c1", "b2")

    sweep.join(timeout=200)
    check(not sweep.is_alive(), "the sweep did not end")
    if sweep.error:
        raise Failure(f"the sweep failed: {sweep.error}")
    for out in sweep.outputs:
        log(out)
        check("65535 frames" in out, f"the sweep did not send every port: {out}")
    ended = time.monotonic()

    # The forgery is over: c1's own knock opens b1 within seconds.
    fleet.knock("c1", "b1", for_b1)
    fleet.wait_open("c1", "b1")
    log(f"c1 reached bastion1 {time.monotonic() - ended:.2f} s after the forged sweep ended")
    check(not fleet.can_connect("c2", "b1", timeout=2), "the sweeper c2 reaches bastion1")
    for seq, bastion in ((for_b1, "bastion1"), (for_b2, "bastion2")):
        opened = fleet.audit_where("knock.opened", sequence=seq["id"])
        check(len(opened) == 1 and opened[0]["who"] == c1 and opened[0]["where"] == f"agent:{bastion}",
              f"expected one knock.opened by {c1} on {bastion} for sequence {seq['id']}: {opened}")

    # The scanner is still reported, by bastion1 alone.
    records, took = wait_until(lambda: scanner_records(fleet, c1, audit_before), 30,
                               f"a scanner.seen record for {c1}")
    log(f"scanner record from {records[0]['where']} (after {took:.2f} s of waiting): {records[0]['details']}")
    check(all(r["where"] == "agent:bastion1" for r in records),
          f"scanner records for {c1} from bastions that were not swept: {records}")
    check(not scanner_records(fleet, c2, audit_before), f"{c2} (the real sender) was reported, not {c1}")
    for b in ("b2", "b3"):
        check(f"{c1}: knocks like a scanner" not in agent_log(fleet, b), f"{AGENT_NAME[b]} reports {c1} as a scanner")

    # No fleet-wide lockout through the controller: with the report
    # recorded, c1's fleet-wide knock on b3 opens every bastion. (First the
    # per-bastion grants run out, so each open door is the new grant's.)
    fleet.wait_closed("c1", "b1")
    fleet.wait_closed("c1", "b2")
    fleet.knock("c1", "b3", fleet_wide)
    for b in BASTIONS:
        fleet.wait_open("c1", b)
    opened = fleet.audit_where("knock.opened", sequence=fleet_wide["id"])
    check(len(opened) == 1 and opened[0]["who"] == c1, f"expected one knock.opened by {c1} on bastion3: {opened}")


run_scenario(scenario)
