"""Scenario 4: the controller is killed (SIGKILL). Each bastion still opens
for a knock of its own offline-reserve sequence; a reserve sequence of
bastion1 opens nothing on bastion2, and is not accepted twice on bastion1.
The agents spool what happened; once the controller is back every event is
in the audit log exactly once, the log verifies (online, and exported then
verified offline with the public key), and the used reserve sequences are
burnt and stay unusable."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import AGENT_NAME, BASTIONS, check, log, run_scenario, wait_until  # noqa: E402


def index(record):
    return int(record.get("index", 0))  # proto3 JSON leaves out index 0


def opened(audit, sequence):
    return [r for r in audit if r.get("what") == "knock.opened" and
            r.get("details", {}).get("sequence") == str(sequence["id"])]


def check_no_duplicates(audit, since):
    """An agent's resend after reconnect must not duplicate a record: no
    agent record id (origin) twice, and among what the agents reported
    since the restart no record twice (same who, what, where, details)."""
    origins = {}
    for r in audit:
        if r.get("origin"):
            check(r["origin"] not in origins,
                  f"audit records {origins.get(r['origin'])} and {index(r)} share origin {r['origin']}")
            origins[r["origin"]] = index(r)
    seen = {}
    for r in audit:
        if index(r) <= since or not r.get("where", "").startswith("agent:"):
            continue
        if r.get("what") in ("agent.connected", "agent.disconnected"):
            continue  # a session's own records, not resent events
        key = (r.get("who"), r.get("what"), r.get("where"), json.dumps(r.get("details", {}), sort_keys=True))
        check(key not in seen, f"audit records {seen.get(key)} and {index(r)} are the same event: {key}")
        seen[key] = index(r)
    log(f"no duplicate among {len(origins)} agent records ({len(seen)} since the restart)")


def verify_audit(fleet):
    result = fleet.sesamectl("audit", "verify", check_ok=False)
    check(result.returncode == 0, f"audit verify: exit {result.returncode}: {result.stdout} {result.stderr}")
    log(f"audit verify: {result.stdout.strip()}")
    export = os.path.join(fleet.run_dir, "audit.export")
    pubkey = os.path.join(fleet.run_dir, "audit.pub")
    fleet.sesamectl("audit", "export", "--out", export)
    pem = fleet.sesamectl("audit", "pubkey").stdout
    check("BEGIN PUBLIC KEY" in pem, f"audit pubkey printed no PEM key: {pem!r}")
    with open(pubkey, "w") as f:
        f.write(pem)
    result = fleet.sesamectl("audit", "verify", "--file", export, "--pubkey", pubkey, check_ok=False)
    check(result.returncode == 0, f"offline audit verify: exit {result.returncode}: {result.stdout} {result.stderr}")
    log(f"offline audit verify of the export ({os.path.getsize(export)} bytes): {result.stdout.strip()}")


def scenario(fleet):
    # Reserve sequences: two for bastion1 (one stays unused), one each for
    # the others; every agent must hold its own before the controller dies.
    reserve = {b: fleet.issue("openSSH", count=2 if b == "b1" else 1, reserve=b) for b in BASTIONS}
    used = {b: reserve[b][0] for b in BASTIONS}
    spare = reserve["b1"][1]

    def holding():
        # Live: its bastion acknowledged it (the controller also keeps
        # reserves of its own, so reserve_left alone does not tell).
        sequences = fleet.sequences()
        return all(sequences.get(s["id"], {}).get("state") == "live" for b in BASTIONS for s in reserve[b])

    _, took = wait_until(holding, 60, "every agent holding its reserve", interval=0.5)
    log(f"agents hold their reserve sequences after {took:.2f} s")

    fleet.kill("controller")
    check(fleet.sesamectl("health", check_ok=False).returncode != 0, "the controller still answers")

    # bastion1's sequence on bastion2 first: it must open nothing there.
    fleet.knock("c2", "b2", used["b1"])
    for b in BASTIONS:
        fleet.knock("c1", b, used[b])
        fleet.wait_open("c1", b)
    fleet.check_shut("c2", "b2", 3, "a reserve sequence of bastion1 opened bastion2")
    # The same sequence again on its own bastion, from another client.
    fleet.knock("c2", "b1", used["b1"])
    fleet.check_shut("c2", "b1", 3, "a used reserve sequence was accepted again while the controller was down")

    fleet.start("controller")
    restart = max(index(r) for r in fleet.audit() if r.get("what") == "controller.started")

    # Reconnected: an agent.connected record of each since the restart (the
    # controller's `agents list` may still show the sessions of before the
    # crash as connected, so it cannot tell).
    def reconnected():
        back = {r.get("where") for r in fleet.audit() if r.get("what") == "agent.connected" and index(r) > restart}
        return all(f"agent:{AGENT_NAME[b]}" in back for b in BASTIONS)

    _, took = wait_until(reconnected, 60, "every agent reconnecting to the restarted controller", interval=0.2)
    log(f"every agent reconnected {took:.2f} s after the controller was healthy")
    fleet.wait_connected()

    def all_reported():
        audit = fleet.audit()
        return audit if all(opened(audit, used[b]) for b in BASTIONS) else None

    audit, took = wait_until(all_reported, 60, "the offline knocks reaching the audit log", interval=0.5)
    log(f"every offline knock in the audit log {took:.2f} s after the agents reconnected")

    # Spooled, not lost: sent after the restart, by agents that said at
    # connect time they had something spooled.
    for b in BASTIONS:
        connected = [r for r in audit if r.get("what") == "agent.connected" and
                     r.get("where") == f"agent:{AGENT_NAME[b]}" and index(r) > restart]
        check(connected, f"no agent.connected record of {b} after the restart")
        depth = int(connected[0].get("details", {}).get("spool_depth", 0))
        log(f"{b} reconnected with {depth} spooled record(s)")
        check(depth >= 1, f"{b} had nothing spooled although it admitted a knock while the controller was down")

    for b in BASTIONS:
        records = opened(audit, used[b])
        check(len(records) == 1, f"{len(records)} knock.opened records for {b}'s reserve sequence {used[b]['id']}")
        [r] = records
        check(r.get("where") == f"agent:{AGENT_NAME[b]}", f"sequence {used[b]['id']} opened at {r.get('where')}")
        check(r.get("who") == fleet.address("c1"), f"sequence {used[b]['id']} opened for {r.get('who')}")
        check(index(r) > restart, f"the knock.opened of {b} (record {index(r)}) precedes the restart")
        applied = [g for g in audit if g.get("what") == "grant.applied" and
                   g.get("where") == f"agent:{AGENT_NAME[b]}" and
                   g.get("details", {}).get("origin") == "offline-reserve"]
        check(len(applied) == 1, f"{len(applied)} offline grant.applied records of {b}")
    check(not opened(audit, spare), f"the unused reserve sequence {spare['id']} is in the audit log as opened")
    check_no_duplicates(audit, restart)
    verify_audit(fleet)

    sequences = fleet.sequences()
    for b in BASTIONS:
        s = sequences.get(used[b]["id"], {})
        check(s.get("state") == "burnt", f"{b}'s used reserve sequence is {s.get('state')}")
        check(s.get("consumed_by") == AGENT_NAME[b], f"{b}'s reserve sequence consumed by {s.get('consumed_by')}")
    check(sequences.get(spare["id"], {}).get("state") == "live",
          f"the unused reserve sequence is {sequences.get(spare['id'], {}).get('state')}")

    # Burnt for good: the controller is back, and the knock still opens nothing.
    fleet.knock("c2", "b1", used["b1"])
    fleet.check_shut("c2", "b1", 3, "a burnt reserve sequence was accepted after the controller returned")
    check(len(opened(fleet.audit(), used["b1"])) == 1, "a burnt reserve sequence was opened a second time")


if __name__ == "__main__":  # also a module: ha_test.py reuses its steps
    run_scenario(scenario)
