"""Scenario 7: `sesamectl grants revoke` closes an open grant on every
bastion. c1 knocks a fleet-wide sequence, reaches b1, b2 and b3; the
operator revokes the grant by id; c1 is shut out of all three (how long that
took is logged, from the probes and from the agents' own reports, not
asserted); the audit has the revocation with the operator's name and each
bastion's removal, and `grants list --all` shows the grant revoked. Then
`grants revoke --ip` on per-bastion grants: only that address loses access.

The doors' TTL is raised for this bed so that nothing closes by expiring
while the scenario runs: every closing seen here is the revocation's."""

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import BASTIONS, AGENT_NAME, check, log, run_scenario, wait_until  # noqa: E402

os.environ["SESAME_FLEET_TTL"] = "10m"
PROBE_TIMEOUT = 0.5  # a dropped SYN costs the probe this long


def open_grant_of(fleet, address):
    grants = [g for g in fleet.grants() if g.get("address") == address]
    check(len(grants) == 1, f"expected one open grant for {address}, got {grants}")
    return grants[0]


def wait_shut_out(fleet, client, bastions, what, timeout=30):
    """Probes the bastions (all at once) until none lets client in; returns
    the seconds."""
    left = set(bastions)

    def shut():
        with ThreadPoolExecutor(max_workers=len(left)) as pool:
            reachable = dict(zip(sorted(left), pool.map(
                lambda b: fleet.can_connect(client, b, timeout=PROBE_TIMEOUT), sorted(left))))
        left.difference_update(b for b, ok in reachable.items() if not ok)
        return not left

    _, took = wait_until(shut, timeout, f"{client} shut out of {', '.join(bastions)} after {what}", interval=0.02)
    return took


def agent_removal_delays(grant_id, records):
    """Seconds from the grant.revoked record to each agent's grant.removed,
    from the records' own times (each agent stamps its report)."""
    from datetime import datetime

    def at(r):
        return datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp()

    [revoked] = [r for r in records if r["what"] == "grant.revoked" and r["details"].get("grant") == str(grant_id)]
    return {r["who"]: at(r) - at(revoked) for r in records
            if r["what"] == "grant.removed" and r["details"].get("grant") == str(grant_id)}


def scenario(fleet):
    c1 = fleet.address("c1")

    # --- by id: a fleet-wide grant ---
    [wide] = fleet.issue("fleetSSH")
    fleet.knock("c1", "b2", wide)
    for b in BASTIONS:
        fleet.wait_open("c1", b)
    grant = open_grant_of(fleet, c1)
    check(grant.get("fleet_wide"), f"the fleetSSH grant is not fleet-wide: {grant}")
    gid = int(grant["id"])

    start = time.monotonic()
    result = fleet.sesamectl("grants", "revoke", str(gid))
    log(f"sesamectl grants revoke {gid}: {result.stdout.strip()}")
    took = wait_shut_out(fleet, "c1", BASTIONS, f"revoking grant {gid}")
    log(f"c1 shut out of b1, b2, b3 {time.monotonic() - start:.2f} s after the revoke command "
        f"({took:.2f} s of polling, probes of {PROBE_TIMEOUT} s)")
    check(not fleet.can_connect("c1", "b1", timeout=2), "c1 reaches b1 again after the revoke")
    for b in BASTIONS:
        check(c1 not in fleet.nft_grants(b), f"{b}'s nftables set still holds {c1}")

    # The controller's view: revoked (not expired), removed everywhere.
    [listed] = [g for g in fleet.sesamectl_json("grants", "list", "--all")[0]["grants"] if int(g["id"]) == gid]
    check(listed["state"] == "revoked", f"grants list shows grant {gid} as {listed['state']}")
    check(not [g for g in fleet.grants() if int(g["id"]) == gid], f"grant {gid} is still listed as open")

    def removed_everywhere():
        [g] = [g for g in fleet.sesamectl_json("grants", "list", "--all")[0]["grants"] if int(g["id"]) == gid]
        states = {a["agent"]: a["state"] for a in g.get("agents", [])}
        return all(states.get(AGENT_NAME[b]) == "removed" for b in BASTIONS)

    wait_until(removed_everywhere, 30, f"every bastion reporting grant {gid} removed")

    records = fleet.audit()
    revokes = [r for r in records if r["what"] == "grant.revoked" and r["details"].get("grant") == str(gid)]
    check(len(revokes) == 1, f"expected one grant.revoked record for grant {gid}, got {revokes}")
    check(revokes[0]["who"] == "admin:oncall", f"the revocation is not the operator's: {revokes[0]}")
    check(revokes[0]["details"].get("address") == c1, f"the revocation names another address: {revokes[0]}")
    delays = agent_removal_delays(gid, records)
    check(set(delays) == {f"agent:{AGENT_NAME[b]}" for b in BASTIONS}, f"grant.removed records: {delays}")
    for r in records:
        if r["what"] == "grant.removed" and r["details"].get("grant") == str(gid):
            check(r["details"].get("expired") == "false", f"a bastion says grant {gid} expired: {r}")
    log("revoke to removal on each bastion (audit times): " +
        ", ".join(f"{who} {1000 * d:.1f} ms" for who, d in sorted(delays.items())))

    # --- by address: per-bastion grants of two clients ---
    c2 = fleet.address("c2")
    [s1, s2] = fleet.issue("openSSH", count=2)
    fleet.knock("c1", "b1", s1)
    fleet.knock("c2", "b1", s2)
    fleet.wait_open("c1", "b1")
    fleet.wait_open("c2", "b1")
    g1 = open_grant_of(fleet, c1)
    check(not g1.get("fleet_wide"), f"the openSSH grant is fleet-wide: {g1}")

    start = time.monotonic()
    result = fleet.sesamectl("-o", "json", "grants", "revoke", "--ip", c1)
    log(f"sesamectl grants revoke --ip {c1}: {result.stdout.strip()}")
    took = wait_shut_out(fleet, "c1", ["b1"], f"revoking --ip {c1}")
    log(f"c1 shut out of b1 {time.monotonic() - start:.2f} s after the revoke command ({took:.2f} s of polling)")
    check(fleet.can_connect("c2", "b1", timeout=2), "revoking c1's grant shut c2 out too")
    check(open_grant_of(fleet, c2), "c2's grant is gone")
    check(not [g for g in fleet.grants() if g.get("address") == c1], f"{c1} still has an open grant")
    by_ip = [r for r in fleet.audit_where("grant.revoked", address=c1) if r["details"].get("grant") == str(g1["id"])]
    check(len(by_ip) == 1 and by_ip[0]["who"] == "admin:oncall",
          f"expected one grant.revoked by admin:oncall for grant {g1['id']}, got {by_ip}")

    # Nothing left to revoke: not an error, nothing revoked, nothing audited.
    before = len(fleet.audit_where("grant.revoked"))
    fleet.sesamectl("grants", "revoke", "--ip", c1)
    check(len(fleet.audit_where("grant.revoked")) == before, "revoking nothing wrote a grant.revoked record")
    # An unknown id: "not found" (5).
    result = fleet.sesamectl("grants", "revoke", "999999", check_ok=False)
    check(result.returncode == 5, f"revoking an unknown grant: exit {result.returncode} ({result.stderr.strip()})")


run_scenario(scenario)
