#!/usr/bin/env python3
"""Controller failover to the next door opening, on the HA bed.

Brings up the high-availability test bed (tests/fleet/bed.sh --ha: three
etcd members, three controllers, three bastions each starting on its own
controller). Each trial: bastion1's agent holds a fresh one-time sequence;
the controller bastion1 has its session with is SIGKILLed; at once client c1
knocks that sequence on bastion1 and probes port 22. The clock starts at the
kill and stops when the port answers: the agent notices, moves to the next
controller, reports the knock there (consumed through etcd), gets the grant
and opens its firewall. The killed controller is started again and the
grant revoked before the next trial.

    python3 bench/fleet/controller_failover.py BUILD_DIR [--trials 20]

Bounded: TRIALS (at most 100) trials, each waiting at most 20 s.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/fleet"))
from fleet import CONTROLLER_NS, Failure, Fleet, log, wait_until  # noqa: E402
from ha_test import session_controller  # noqa: E402


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def trial(fleet, n):
    [seq] = fleet.issue("openSSH", for_name=f"failover{n}")
    fleet.wait_synced(("b1",))
    ns = session_controller(fleet, "b1")
    daemon = next(d for d, c in CONTROLLER_NS.items() if c == ns)
    # sesamectl through a controller that stays up.
    fleet.controller = next(c for c in CONTROLLER_NS.values() if c != ns)
    fleet.kill(daemon)
    killed = time.monotonic()
    fleet.knock("c1", "b1", seq)
    wait_until(lambda: fleet.can_connect("c1", "b1", timeout=0.2), 20, "bastion1 open after the failover",
               interval=0.02)
    took = time.monotonic() - killed
    moved_to = session_controller(fleet, "b1")
    fleet.start(daemon)
    for g in fleet.grants():
        fleet.sesamectl("grants", "revoke", str(g["id"]))
    fleet.wait_closed("c1", "b1")
    log(f"trial {n}: {daemon} ({ns}) killed, bastion1 moved to {moved_to}, door open after {took:.2f} s")
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir")
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    trials = max(1, min(args.trials, 100))
    fleet = Fleet.up(args.build_dir, ha=True)
    try:
        fleet.wait_connected()
        times = [trial(fleet, n) for n in range(1, trials + 1)]
    except Failure as e:
        print(f"FAIL: {e}")
        fleet.dump_logs()
        return 1
    finally:
        fleet.down()
    print(f"controller failover to door open, {trials} trials: "
          f"p50 {percentile(times, 50):.2f} s, p99 {percentile(times, 99):.2f} s, max {max(times):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
