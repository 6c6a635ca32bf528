"""Scenario 9: a sweep of every port from a client opens no door (strict
mode, the managed default) and reports the source as a scanner.

With live sequences on every bastion (per-bastion and fleet-wide), c1 sends
a SYN to each TCP port 1-65535 of b1, then a UDP datagram to each UDP port
(knockgen sweep, 20,000 ports/s, bounded in count and time). Afterwards:
c1 reaches no bastion, no sequence was consumed, no grant exists; the
audit has a scanner record for c1 from bastion1 and the agent's log says
so; and a legitimate knock from c2 still opens b1."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import BASTIONS, check, log, run_scenario, wait_until  # noqa: E402


def agent_log(fleet, bastion):
    with open(os.path.join(fleet.run_dir, f"{bastion}-agent.log"), errors="replace") as f:
        return f.read()


def scenario(fleet):
    c1, c2 = fleet.address("c1"), fleet.address("c2")
    live = fleet.issue("openSSH", count=3) + fleet.issue("fleetSSH", count=2) + fleet.issue("consoleSSH", count=2)
    [spare] = fleet.issue("openSSH")  # for c2 afterwards
    live_ids = {s["id"] for s in live} | {spare["id"]}
    audit_before = len(fleet.audit())

    for protocol in ("tcp", "udp"):
        out = fleet.knockgen("c1", "b1", "sweep", "--src", c1, "--rate", "20000", "--protocol", protocol,
                             max_seconds=60)
        log(out)
        check("65535 frames" in out, f"the {protocol} sweep did not send every port: {out}")

    # The scanner is reported (the agent sends it to the controller on its
    # own schedule: wait for it).
    def scanner_records():
        return [r for r in fleet.audit()[audit_before:]
                if r["what"] == "scanner.seen" and r["who"] == c1 and r["where"] == "agent:bastion1"]

    records, took = wait_until(scanner_records, 30, "a scanner.seen record for c1 from bastion1")
    log(f"scanner record after {took:.2f} s: {records[0]['details']}")
    check(f"{c1}: knocks like a scanner" in agent_log(fleet, "b1"), "bastion1's log does not report c1 as a scanner")

    # No door opened: no connection, no grant, no sequence consumed, no
    # knock recorded as opening anything.
    for b in BASTIONS:
        check(not fleet.can_connect("c1", b, timeout=2), f"the sweep opened {b}:22 for c1")
        check(c1 not in fleet.nft_grants(b), f"{b}'s nftables set holds {c1}")
    check(not fleet.sesamectl_json("grants", "list", "--all")[0].get("grants"), "the sweep produced a grant")
    burnt = [s for s in fleet.sesamectl_json("sequences", "list", "--state", "burnt")[0].get("sequences", [])
             if int(s["id"]) in live_ids]
    check(not burnt, f"the sweep consumed sequences: {burnt}")
    opened = [r for r in fleet.audit()[audit_before:] if r["what"].startswith(("knock.", "grant."))]
    check(not opened, f"the sweep left knock or grant records: {opened}")
    log(f"bastion1 after the sweep: {[line for line in agent_log(fleet, 'b1').splitlines() if c1 in line][-3:]}")

    # The sweep broke nothing: c2's knock opens b1 (and only for c2).
    fleet.knock("c2", "b1", spare)
    fleet.wait_open("c2", "b1")
    check(not fleet.can_connect("c1", "b1", timeout=2), "c2's grant let c1 in")
    check(fleet.audit_where("knock.opened", sequence=spare["id"]), "no knock.opened record for c2's knock")


run_scenario(scenario)
