"""Scenario: a stolen agent key is not the fleet.

An attacker holds bastion1: its agent is stopped, and a forged client
(forge_agent, built with the tests) speaks AgentService with bastion1's
certificate and key from bastion1's namespace. What that key learns is
printed (the snapshot: the fleet sequences bastion1 serves, not another
bastion's reserve). What it tries, each refused by the controller, audited
as knock.refused with the reason and why, counted in
sesame_controller_knocks_refused_total{reason}:

  - burn bastion2's reserve sequence (even with its right knocks): other_bastion;
  - burn an operator's sequence by id with wrong knocks: knocks_differ;
  - open the fleet-wide door for bastion2's or the controller's own address
    (source_own_address), or for a multicast address (source_not_unicast);
  - date its report in the year 294247: agent_time.

Then it floods: more knock reports than bastion1's limit (burst 30, 12 a
minute): the excess is refused, counted in
sesame_controller_rate_limited_total{agent="bastion1",limit="knock_reports"},
and recorded once, when the window (1 minute) has passed, with the count;
not one record per report.

The fleet keeps working: every sequence the forger named is still unused
and opens for its own client and bastion (bastion2's reserve on bastion2,
the operator's sequence on bastion3, the fleet-wide one on bastion2 and
bastion3); bastion1's real agent, started again, admits a knock; the audit
chain verifies."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import AGENT_NAME, check, log, run_scenario, wait_until  # noqa: E402

FLOOD = 45


def forge(fleet, lines, quiet_seconds=5):
    """Runs forge_agent with bastion1's key in bastion1's namespace; returns
    (held sequences {id: (door, kind)}, verdicts {report id: outcome},
    ids without a verdict)."""
    tls = os.path.join(fleet.hosts, "bastion1/etc/sesame/tls")
    argv = [os.path.join(fleet.build_dir, "tests/fleet/forge_agent"),
            "--controller", f"{fleet.address('ctl')}:7443",
            "--ca-cert", os.path.join(tls, "ca.crt"),
            "--cert", os.path.join(tls, "agent.crt"),
            "--key", os.path.join(tls, "agent.key"),
            "--quiet-seconds", str(quiet_seconds)]
    result = fleet.exec_in("b1", argv, input="\n".join(lines) + "\n", timeout=180)
    check(result.returncode == 0, f"forge_agent failed: {result.stderr.strip()}")
    held, verdicts, unanswered = {}, {}, []
    for line in result.stdout.splitlines():
        f = line.split()
        if f[0] == "held":
            held[int(f[1])] = (f[2], f[4])
        elif f[0] == "verdict":
            verdicts[f[1]] = f[2]
        elif f[0] == "none":
            unanswered.append(f[1])
    return held, verdicts, unanswered


def metric(fleet, name, **labels):
    [stats] = fleet.sesamectl_json("stats")
    for m in stats.get("metrics", []):
        if m.get("name") == name and all(m.get("labels", {}).get(k) == v for k, v in labels.items()):
            return float(m.get("value", 0))
    return None


def state(fleet, sequence):
    return fleet.sequences()[sequence["id"]].get("state")


def scenario(fleet):
    b1, b2 = AGENT_NAME["b1"], AGENT_NAME["b2"]
    c1, c2 = fleet.address("c1"), fleet.address("c2")
    fleet.kill("b1")  # the attacker owns bastion1
    [reserve] = fleet.issue("openSSH", reserve="b2", for_name="break-glass")
    [operator] = fleet.issue("openSSH", for_name="alice")
    [fleetwide] = fleet.issue("fleetSSH", for_name="bob")
    fleet.wait_synced(bastions=("b2", "b3"))

    def knocks(sequence):
        return ",".join(sequence["knocks"])

    wrong = ",".join(f"{1000 + i}:tcp" for i in range(len(operator["knocks"])))
    attempts = {
        "f1": (f"f1 {reserve['id']} {c1} {knocks(reserve)}", "other_bastion"),
        "f2": (f"f2 {operator['id']} {c1} {wrong}", "knocks_differ"),
        "f3": (f"f3 {fleetwide['id']} {fleet.address('b2')} {knocks(fleetwide)}", "source_own_address"),
        "f4": (f"f4 {fleetwide['id']} {fleet.address('ctl')} {knocks(fleetwide)}", "source_own_address"),
        "f5": (f"f5 {fleetwide['id']} 224.0.0.1 {knocks(fleetwide)}", "source_not_unicast"),
        "f6": (f"f6 {fleetwide['id']} {c1} {knocks(fleetwide)} at=9223372036854", "agent_time"),
    }
    held, verdicts, unanswered = forge(fleet, [line for line, _ in attempts.values()])
    log(f"the stolen key learnt {len(held)} sequences: {sorted(held.items())}")
    check(operator["id"] in held and fleetwide["id"] in held,
          "the forger's snapshot lacks the fleet sequences bastion1 serves")
    check(reserve["id"] not in held, "bastion1's key was sent bastion2's reserve sequence")
    check(not unanswered, f"reports without a verdict: {unanswered}")
    for report, outcome in sorted(verdicts.items()):
        check(outcome == "refused", f"forged report {report} ({attempts[report][0]}): {outcome}, expected refused")
    log(f"every forged report refused: {sorted(verdicts)}")

    records = [r for r in fleet.audit_where("knock.refused") if r.get("where") == f"agent:{b1}"]
    by_reason = {}
    for r in records:
        d = r.get("details", {})
        by_reason.setdefault(d.get("reason"), []).append(r)
        check(d.get("why"), f"a knock.refused record without why: {r}")
        log(f"knock.refused {d.get('reason')}: {d.get('why')}")
    for report, (line, reason) in attempts.items():
        check(by_reason.get(reason), f"no knock.refused record with reason {reason} ({report})")
    [other] = by_reason["other_bastion"]
    check(other["details"].get("reserve_of") == b2, f"the other_bastion record does not name {b2}: {other}")
    check(knocks(reserve).split(",")[0] not in other["details"].get("knocks", ""),
          f"the record shows the knocks of bastion2's unused reserve sequence: {other}")
    expected = {"other_bastion": 1, "knocks_differ": 1, "source_own_address": 2, "source_not_unicast": 1,
                "agent_time": 1}
    for reason, count in expected.items():
        value = metric(fleet, "sesame_controller_knocks_refused_total", reason=reason)
        check(value is not None and value >= count,
              f"sesame_controller_knocks_refused_total{{reason={reason}}} = {value}, expected at least {count}")

    # The flood: reports of sequences that do not exist, from a plausible
    # knocker, as fast as the stream takes them.
    lines = [f"r{i} {900000 + i} {c2} 1001:tcp,1002:tcp,1003:tcp,1004:tcp" for i in range(FLOOD)]
    _, flood, unanswered = forge(fleet, lines)
    check(not unanswered, f"flood reports without a verdict: {unanswered}")
    refused = sum(1 for o in flood.values() if o == "refused")
    unknown = sum(1 for o in flood.values() if o == "unknown")
    log(f"flood of {FLOOD}: {unknown} answered unknown, {refused} refused by the rate limit")
    check(refused > 0 and unknown + refused == FLOOD, f"flood verdicts: {flood}")
    check(unknown <= 30, f"{unknown} flood reports got through a limit of burst 30")
    limited = metric(fleet, "sesame_controller_rate_limited_total", agent=b1, limit="knock_reports")
    check(limited == refused, f"sesame_controller_rate_limited_total = {limited}, expected {refused}")
    check(len([r for r in fleet.audit_where("knock.unknown") if r.get("where") == f"agent:{b1}"]) == unknown,
          "the refused flood reports left records")

    def window_record():
        found = [r for r in fleet.audit_where("knock.refused", reason="rate_limit") if r.get("who") == f"agent:{b1}"]
        return found or None

    [summary], took = wait_until(window_record, 150, "the rate-limit window's knock.refused record", interval=2)
    log(f"rate-limit record {took:.0f} s after the flood: {summary['details'].get('why')}")
    check(summary["details"].get("refused") == str(refused),
          f"the window record counts {summary['details'].get('refused')}, expected {refused}")
    check(summary["details"].get("limit") == "knock_reports", f"window record: {summary}")

    # Nothing the forger named was consumed; each opens for its own.
    for s in (reserve, operator, fleetwide):
        check(state(fleet, s) != "burnt", f"sequence {s['id']} was burnt by the forger")
    fleet.knock("c1", "b2", fleetwide)
    fleet.wait_open("c1", "b2")
    fleet.wait_open("c1", "b3")
    fleet.knock("c2", "b2", reserve)
    fleet.wait_open("c2", "b2")
    fleet.knock("c2", "b3", operator)
    fleet.wait_open("c2", "b3")

    # bastion1's own agent back: its knocks are admitted again.
    fleet.start("b1")
    fleet.wait_connected()
    [fresh] = fleet.issue("openSSH", for_name="alice")
    fleet.wait_synced()
    fleet.knock("c1", "b1", fresh)
    fleet.wait_open("c1", "b1")
    verify = fleet.sesamectl("audit", "verify")
    log(f"audit verify: {verify.stdout.strip().splitlines()[-1] if verify.stdout.strip() else 'ok'}")


run_scenario(scenario)
