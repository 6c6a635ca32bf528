#!/usr/bin/python3
"""Process figures for the side-by-side benchmarks, read from /proc.

  procstat.py sample --out CSV --stop-file F [--interval S] [--max-seconds N] NAME=PID ...
      Every interval, append "t,subject,rss_kb,cpu_s,runnable_s" for each
      process (t: Unix time; cpu_s: user+system CPU seconds so far;
      runnable_s: see read_process) until the stop file exists, every
      process is gone, or max-seconds have passed.
      With --link PID:IFACE --link-out CSV, also "t,rx_packets,rx_dropped" of
      IFACE as seen from PID's network namespace (/proc/PID/net/dev).
  procstat.py window [--min-rise N] LINK_CSV
      "T0 T1": the sample before rx_packets first rose by N or more (100)
      and the sample where it last did: a window that holds the traffic.
  procstat.py cpu CSV --from T0 --to T1
      Per subject: CPU seconds spent in [T0, T1], mean and peak share of one
      core over that window, and the share of it the main thread was
      runnable (running or waiting for a CPU: 100% means it wanted a whole
      core, however much it got).
  procstat.py memory CSV --from T0 --to T1
      Per subject: RSS before T0, peak, at T1 and at the end, and the growth
      rate over [T0, T1] (least squares, kB/s).
"""
import argparse
import csv
import os
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def read_process(pid):
    """(rss_kb, cpu_s, runnable_s) of a live process, or None once it is gone.

    runnable_s is time on a CPU plus time waiting for one (schedstat, main
    thread): what the process wanted, whether or not it got it.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/schedstat") as f:
            on_cpu_ns, waiting_ns = (int(x) for x in f.read().split()[:2])
    except (OSError, ValueError):
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    rss_kb = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return rss_kb, cpu_s, (on_cpu_ns + waiting_ns) / 1e9


def read_link(pid, interface):
    """(rx_packets, rx_dropped) of interface in pid's namespace, or None."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            for line in f:
                name, _, counters = line.partition(":")
                if name.strip() == interface:
                    fields = counters.split()
                    return int(fields[1]), int(fields[3])
    except OSError:
        pass
    return None


def sample(args):
    targets = []
    for item in args.targets:
        name, _, pid = item.partition("=")
        if not name or not pid.isdigit():
            sys.exit(f"procstat: '{item}': expected NAME=PID")
        targets.append((name, int(pid)))
    link_pid, link_interface = None, None
    if args.link:
        pid, _, link_interface = args.link.partition(":")
        if not pid.isdigit() or not link_interface or not args.link_out:
            sys.exit("procstat: --link takes PID:IFACE and needs --link-out")
        link_pid = int(pid)
    deadline = time.time() + args.max_seconds
    link_out = open(args.link_out, "a", newline="") if link_pid else None
    with open(args.out, "a", newline="") as out:
        writer = csv.writer(out)
        if out.tell() == 0:
            writer.writerow(["t", "subject", "rss_kb", "cpu_s", "runnable_s"])
        link_writer = csv.writer(link_out) if link_out else None
        if link_out and link_out.tell() == 0:
            link_writer.writerow(["t", "rx_packets", "rx_dropped"])
        next_tick = time.time()
        while time.time() < deadline and not os.path.exists(args.stop_file):
            alive = 0
            now = time.time()
            for name, pid in targets:
                figures = read_process(pid)
                if figures is not None:
                    alive += 1
                    writer.writerow([f"{now:.3f}", name, figures[0], f"{figures[1]:.2f}", f"{figures[2]:.3f}"])
            out.flush()
            if link_writer:
                counters = read_link(link_pid, link_interface)
                if counters is not None:
                    link_writer.writerow([f"{now:.3f}", counters[0], counters[1]])
                    link_out.flush()
            if alive == 0:
                break
            next_tick += args.interval
            time.sleep(max(0.0, next_tick - time.time()))


def load(path):
    series = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            series.setdefault(row["subject"], []).append(
                (float(row["t"]), int(row["rss_kb"]), float(row["cpu_s"]), float(row["runnable_s"])))
    return series


def cpu(args):
    print(f"{'subject':<14} {'cpu_s':>8} {'mean_core%':>11} {'peak_core%':>11} {'runnable%':>10}")
    for name, points in load(args.csv).items():
        window = [p for p in points if args.start <= p[0] <= args.end]
        if len(window) < 2:
            print(f"{name:<14} {'n/a':>8}")
            continue
        spent = window[-1][2] - window[0][2]
        wall = window[-1][0] - window[0][0]
        peak = max((b[2] - a[2]) / (b[0] - a[0]) for a, b in zip(window, window[1:]) if b[0] > a[0])
        runnable = (window[-1][3] - window[0][3]) / wall
        print(f"{name:<14} {spent:>8.2f} {100 * spent / wall:>11.0f} {100 * peak:>11.0f} {100 * runnable:>10.0f}")


def window(args):
    rows = []
    with open(args.csv, newline="") as f:
        for row in csv.DictReader(f):
            rows.append((float(row["t"]), int(row["rx_packets"])))
    # Stray frames (IPv6 neighbour discovery, probes) are not the traffic.
    rises = [i for i in range(1, len(rows)) if rows[i][1] - rows[i - 1][1] >= args.min_rise]
    if not rises:
        sys.exit("procstat: no traffic in " + args.csv)
    print(f"{rows[rises[0] - 1][0]:.3f} {rows[rises[-1]][0]:.3f}")


def slope(points):
    n = len(points)
    if n < 2:
        return float("nan")
    mean_t = sum(p[0] for p in points) / n
    mean_r = sum(p[1] for p in points) / n
    var = sum((p[0] - mean_t) ** 2 for p in points)
    if var == 0:
        return float("nan")
    return sum((p[0] - mean_t) * (p[1] - mean_r) for p in points) / var


def memory(args):
    print(f"{'subject':<14} {'before_kB':>10} {'peak_kB':>10} {'at_end_kB':>10} {'after_kB':>10} {'growth_kB/s':>12}")
    for name, points in load(args.csv).items():
        before = [p for p in points if p[0] <= args.start]
        window = [p for p in points if args.start <= p[0] <= args.end]
        if not before or not window:
            print(f"{name:<14} {'n/a':>10}")
            continue
        print(f"{name:<14} {before[-1][1]:>10} {max(p[1] for p in points):>10} {window[-1][1]:>10} "
              f"{points[-1][1]:>10} {slope(window):>12.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("sample")
    p.add_argument("--out", required=True)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--max-seconds", type=float, default=900)
    p.add_argument("--link", help="PID:IFACE")
    p.add_argument("--link-out")
    p.add_argument("targets", nargs="+")
    p.set_defaults(run=sample)
    for name, run in (("cpu", cpu), ("memory", memory)):
        p = commands.add_parser(name)
        p.add_argument("csv")
        p.add_argument("--from", dest="start", type=float, required=True)
        p.add_argument("--to", dest="end", type=float, required=True)
        p.set_defaults(run=run)
    p = commands.add_parser("window")
    p.add_argument("csv")
    p.add_argument("--min-rise", type=int, default=100, help="packets per sample that count as traffic")
    p.set_defaults(run=window)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
