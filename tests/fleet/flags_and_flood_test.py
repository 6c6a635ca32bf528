"""Raw packets (knockgen) against a managed bastion: the knocks of a live
sequence sent with the wrong TCP flags (ACK, as an established
connection's segments) open nothing and leave the sequence live; the same
sequence then knocked by a real client inside a flood of 200,000 spoofed
knock-shaped packets to the sequence's first port opens bastion1 for that
client alone."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import check, log, run_scenario  # noqa: E402


def scenario(fleet):
    c1, c2 = fleet.address("c1"), fleet.address("c2")
    # Every knock TCP, so that the flags decide.
    seq = None
    for _ in range(20):
        [candidate] = fleet.issue("openSSH")
        if all(k.endswith(":tcp") for k in candidate["knocks"]):
            seq = candidate
            break
    if seq is None:  # 1 in 16 per try: not having one after 20 is a bug
        check(False, "no all-TCP sequence in 20 issued")
    fleet.wait_synced()
    knocks = ",".join(seq["knocks"])

    out = fleet.knockgen("c1", "b1", "sequence", "--src", c1, "--sequence", knocks, "--tcp-flags", "ack",
                         "--gap-ms", "20")
    log(out)
    fleet.check_shut("c1", "b1", 3, "knocks with ACK set opened the door")
    check(seq["id"] not in fleet.sequences("--state", "burnt"), "ACK knocks consumed the sequence")

    first_port = seq["knocks"][0]
    out = fleet.knockgen("c2", "b1", "flood", "--count", "200000", "--port", first_port, "--knockers", "1",
                         "--src-base", c2, "--sequence", knocks, "--random-prefix", "10.99.0.0/16", "--pps", "100000", max_seconds=60)
    log(out)
    fleet.wait_open("c2", "b1")
    check(not fleet.can_connect("c1", "b1"), "the flood's knocker opened b1 for c1")
    opened = fleet.audit_where("knock.opened", sequence=seq["id"])
    check(len(opened) == 1 and opened[0]["who"] == c2, f"expected one knock.opened by {c2}: {opened}")
    [agent] = [a for name, a in fleet.agents().items() if name == "bastion1"]
    log(f"bastion1 after the flood: {agent}")


run_scenario(scenario)
