"""Scenario 6: bastion1's agent is killed with SIGKILL while two grants are
open there, a short one (a knock of openSSH, TTL 8 s, from c1) and a longer
one (opened by the operator for c2, 40 s). It is started again after the
short one's expiry: the expired grant is gone from the firewall (the kernel
saw to it, the agent's reconciliation must not bring it back), the live one
still admits c2 and still ends when it was meant to, not later; `grants
list` agrees."""

import datetime
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import check, log, run_scenario, wait_until  # noqa: E402


def expires_at(grant):
    """A grant's expiry as seconds since the epoch."""
    return datetime.datetime.fromisoformat(grant["expires_at"].replace("Z", "+00:00")).timestamp()


def element(fleet, bastion, address):
    """(present, seconds left) of address's element in sesame's openSSH set
    on bastion, from `nft list table`."""
    text = fleet.nft_grants(bastion)
    m = re.search(re.escape(address) + r"\s+timeout\s+\S+\s+expires\s+((?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?)",
                  text)
    if not m:
        check(not re.search(re.escape(address) + r"\b", text), f"cannot read the element of {address}: {text}")
        return False, 0.0
    left = 0.0
    for amount, unit in re.findall(r"(\d+)(h|ms|m|s)", m.group(1)):
        left += int(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return True, left


def grant_for(fleet, address, all_states=False):
    args = ["grants", "list", "--ip", address] + (["--all"] if all_states else [])
    [response] = fleet.sesamectl_json(*args)
    return response.get("grants", [])


def scenario(fleet):
    c1, c2 = fleet.address("c1"), fleet.address("c2")
    [seq] = fleet.issue("openSSH")
    fleet.knock("c1", "b1", seq)
    fleet.wait_open("c1", "b1")
    fleet.sesamectl("grants", "open", "--agent", "bastion1", "--ip", c2, "--door", "openSSH", "--ttl", "40s")
    fleet.wait_open("c2", "b1")
    [short] = grant_for(fleet, c1)
    [long] = grant_for(fleet, c2)
    log(f"grants on bastion1: {short['id']} for c1 until {short['expires_at']}, "
        f"{long['id']} for c2 until {long['expires_at']}")
    check(element(fleet, "b1", c1)[0] and element(fleet, "b1", c2)[0], "the grants are not in sesame's nftables set")

    fleet.kill("b1")
    # Past the short grant's end (same clock: every namespace shares it).
    wait_until(lambda: time.time() > expires_at(short) + 1, 60, "the short grant's TTL passing", interval=0.2)
    fleet.start("b1")
    fleet.wait_connected(["b1"])

    check(not element(fleet, "b1", c1)[0], "the expired grant of c1 is back in sesame's nftables set")
    fleet.check_shut("c1", "b1", 3, "a grant that expired while the agent was down admits c1 again")
    check(fleet.can_connect("c2", "b1"), "the live grant of c2 no longer admits it after the agent's restart")
    measured = time.time()
    present, left = element(fleet, "b1", c2)
    check(present, "the live grant of c2 is not in sesame's nftables set after the restart")
    # The restart may re-apply the grant but must not extend it: what the
    # kernel has left is at most what the grant had left (1 s for rounding).
    log(f"c2's element has {left:.1f} s left; the grant had {expires_at(long) - measured:.1f} s")
    check(left <= expires_at(long) - measured + 1, "the restart extended c2's grant")

    wait_until(lambda: not grant_for(fleet, c1), 60, "grants list dropping the short grant", interval=0.5)
    [closed] = grant_for(fleet, c1, all_states=True)
    check(closed.get("state") == "expired", f"the short grant is {closed.get('state')}")
    [still] = grant_for(fleet, c2)
    check(still.get("state") == "open", f"the long grant is {still.get('state')} before its end")

    fleet.wait_closed("c2", "b1", timeout=max(0, expires_at(long) - time.time()) + 60)
    log(f"c2 shut out {time.time() - expires_at(long):+.2f} s from the grant's expiry")
    check(time.time() >= expires_at(long) - 1, "c2's grant closed before its expiry")
    check(not element(fleet, "b1", c2)[0], "c2's expired element is still in sesame's nftables set")
    wait_until(lambda: not grant_for(fleet, c2), 60, "grants list dropping the long grant", interval=0.5)
    [ended] = grant_for(fleet, c2, all_states=True)
    check(ended.get("state") == "expired", f"the long grant is {ended.get('state')} after its end")
    check(not element(fleet, "b1", c1)[0] and not element(fleet, "b1", c2)[0], "sesame's set still holds a grant")


run_scenario(scenario)
