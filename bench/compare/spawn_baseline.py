#!/usr/bin/python3
"""The floor under knock-to-door-open latency with a command backend: how
long this machine, right now, takes to start and reap the door command.

  spawn_baseline.py [--count N] DIR
      Spawns `/usr/bin/touch DIR/spawn-baseline` N times (200) directly, and
      N times through `/bin/sh -c` (as knockd runs its commands), waiting for
      each; prints p50/p90/p99/max in milliseconds.
"""
import argparse
import math
import os
import time


def percentile(sorted_values, p):
    rank = min(len(sorted_values), max(1, math.ceil(p / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def measure(argv, count):
    times = []
    for _ in range(count):
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ)
        os.waitpid(pid, 0)
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("dir")
    args = parser.parse_args()
    if not 1 <= args.count <= 10000:
        parser.error("--count must be in 1..10000")
    target = os.path.join(args.dir, "spawn-baseline")
    print(f"{'spawn':<22} {'p50_ms':>9} {'p90_ms':>9} {'p99_ms':>9} {'max_ms':>9}")
    for name, argv in (("touch", ["/usr/bin/touch", target]),
                       ("sh -c touch", ["/bin/sh", "-c", f"/usr/bin/touch {target}"])):
        t = measure(argv, args.count)
        print(f"{name:<22} {percentile(t, 50):>9.2f} {percentile(t, 90):>9.2f} {percentile(t, 99):>9.2f} {t[-1]:>9.2f}")


if __name__ == "__main__":
    main()
