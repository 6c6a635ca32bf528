"""Raw packets (knockgen) against a managed bastion: the knocks of a live
TCP-only sequence sent with the wrong TCP flags (ACK, as an established
connection's segments) open nothing and leave the sequence live; a
sequence knocked by a real client inside a flood of 200,000 spoofed
knock-shaped packets to its first port opens bastion1 for that client
alone."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import check, log, run_scenario  # noqa: E402


def scenario(fleet):
    c1, c2 = fleet.address("c1"), fleet.address("c2")
    # consoleSSH's sequences are TCP only, so the flags decide.
    [tcp_only] = fleet.issue("consoleSSH")
    [seq] = fleet.issue("openSSH")
    fleet.wait_synced()

    out = fleet.knockgen("c1", "b1", "sequence", "--src", c1, "--sequence", ",".join(tcp_only["knocks"]),
                         "--tcp-flags", "ack", "--gap-ms", "20")
    log(out)
    fleet.check_shut("c1", "b1", 3, "knocks with ACK set opened a door")
    check(tcp_only["id"] not in fleet.sequences("--state", "burnt"), "ACK knocks consumed the sequence")
    check(not fleet.audit_where("knock.opened", sequence=tcp_only["id"]), "ACK knocks were recorded as opening")
    knocks = ",".join(seq["knocks"])

    first_port = seq["knocks"][0]
    out = fleet.knockgen("c2", "b1", "flood", "--count", "200000", "--port", first_port, "--knockers", "1",
                         "--src-base", c2, "--sequence", knocks, "--random-prefix", "10.99.0.0/16", "--pps", "100000",
                         # 20,000 flood packets between two knocks: fewer than the
                         # matcher's table holds (MaxSources 65,536), so the flood
                         # cannot evict the knocker's first knock (a documented limit).
                         "--knock-spacing", "20000", max_seconds=60)
    log(out)
    fleet.wait_open("c2", "b1")
    check(not fleet.can_connect("c1", "b1"), "the flood's knocker opened b1 for c1")
    opened = fleet.audit_where("knock.opened", sequence=seq["id"])
    check(len(opened) == 1 and opened[0]["who"] == c2, f"expected one knock.opened by {c2}: {opened}")
    [agent] = [a for name, a in fleet.agents().items() if name == "bastion1"]
    log(f"bastion1 after the flood: {agent}")


run_scenario(scenario)
