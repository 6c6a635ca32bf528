#!/usr/bin/env python3
"""Knock on a managed agent to door open, controller included.

Brings up the fleet test bed (tests/fleet/bed.sh: controller, three managed
bastions with the nftables backend, clients), issues TRIALS sequences of
door openSSH with sesamectl, and for each one knocks bastion1 from client
c1 with plain sockets (no client process start-up in the measurement). The
clock starts just before the last knock leaves and stops when bastion1's
firewall gets the grant: the "add element ... timeout" event of sesame's
nftables set, read from `nft monitor` in bastion1's namespace. In between:
capture, the agent's match, the durable consumption on the controller
(SQLite, synchronous=FULL), the verdict and grant order, the nftables
update. Each grant is revoked before the next trial.

    python3 bench/fleet/knock_to_open.py BUILD_DIR [--trials 200] [--held 100000]

--held N issues N more sequences first (1,000 a call), which the agents
hold through the trials: the cost of a large live set.

Bounded: TRIALS (at most 1000) trials, each waiting at most 5 s for its
grant; the whole run stops after --max-seconds.
"""

import argparse
import ctypes
import os
import queue
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/fleet"))
from fleet import Failure, Fleet, log, wait_until  # noqa: E402

CLONE_NEWNET = 0x40000000


def enter_netns(name):
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/run/netns/{name}") as f:
        if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")


def send_knock(target, knock):
    port, proto = knock.split(":")
    if proto == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"", (target, int(port)))
        return
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect((target, int(port)))  # the SYN leaves now; nobody answers
    except BlockingIOError:
        pass
    s.close()


def watch_grants(monitor, address, events, stop):
    """Puts (monotonic time, line) for every nftables change that `nft
    monitor` (on b1) prints and that names address. The caller kills the
    monitor: a daemon thread's own cleanup never runs at exit, and the
    process would outlive the bench, holding bastion1's namespace."""
    for line in monitor.stdout:
        now = time.monotonic()
        if address in line:
            events.put((now, line.strip()))
        if stop.is_set():
            break


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("build_dir")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=5)
    parser.add_argument("--warmup", type=int, default=5,
                        help="first trials left out of the figures (printed apart): caches and connections warm up")
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--held", type=int, default=0,
                        help="sequences issued (and left unused) before the trials: what the agents hold")
    args = parser.parse_args()
    if not 1 <= args.trials <= 1000:
        parser.error("--trials must be in 1..1000")
    if not 0 <= args.held <= 200000:
        parser.error("--held must be in 0..200000")
    deadline = time.monotonic() + args.max_seconds

    # Hundreds of knocks a minute on one bastion: far beyond a real one, and
    # beyond the controller's per-agent limits, which the bed lifts for
    # benchmarks (tests/fleet/fleet-vars.yml).
    os.environ["SESAME_FLEET_BENCH"] = "1"
    fleet = Fleet.up(args.build_dir)
    monitor = None
    try:
        client = fleet.address("c1")
        target = fleet.address("b1")
        held = 0
        while held < args.held:
            held += len(fleet.issue("openSSH", count=min(1000, args.held - held)))
        if held:
            log(f"{held} sequences issued and held")
        sequences = []
        while len(sequences) < args.trials + args.warmup:
            sequences += fleet.issue("openSSH", count=min(100, args.trials + args.warmup - len(sequences)))
        wait_until(lambda: all(a.get("acked_revision") == a.get("revision") for a in fleet.agents().values()), 60,
                   "every agent holding the sequences")
        events, stop = queue.Queue(), threading.Event()
        monitor = subprocess.Popen(["ip", "netns", "exec", fleet.netns("b1"), "nft", "monitor"],
                                   stdout=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=watch_grants, args=(monitor, client, events, stop), daemon=True).start()
        time.sleep(1)  # nft monitor subscribed
        enter_netns(fleet.netns("c1"))

        took = []
        for n, seq in enumerate(sequences):
            if time.monotonic() > deadline:
                log(f"stopped at --max-seconds after {n} trials")
                break
            for knock in seq["knocks"][:-1]:
                send_knock(target, knock)
                time.sleep(args.gap_ms / 1000)
            while not events.empty():
                events.get_nowait()
            started = time.monotonic()
            send_knock(target, seq["knocks"][-1])
            opened = None
            while opened is None and time.monotonic() - started < 5:
                try:
                    at, line = events.get(timeout=5)
                except queue.Empty:
                    break
                if line.startswith("add element") and "timeout" in line:
                    opened = at
            if opened is None:
                raise Failure(f"trial {n}: no grant on bastion1 within 5 s")
            took.append((opened - started) * 1000)
            fleet.sesamectl("grants", "revoke", "--ip", client)
            # The revocation's delete reaches the firewall before the next trial.
            wait_until(lambda: any(line.startswith("delete element") for _, line in _drain(events)), 10,
                       "the revocation reaching bastion1")
        stop.set()
        warm, took = took[:args.warmup], took[args.warmup:]
        print(f"warm-up trials (left out): {', '.join(f'{t:.2f}' for t in warm)} ms")
        print(f"knock to door open on a managed agent (nftables), controller included, {len(took)} trials, "
              f"{held + len(sequences)} sequences held at the start:")
        print(f"  p50 {percentile(took, 50):.2f} ms, p90 {percentile(took, 90):.2f} ms, "
              f"p99 {percentile(took, 99):.2f} ms, max {max(took):.2f} ms, min {min(took):.2f} ms")
        with open("/proc/loadavg") as f:
            print(f"  load average at the end: {f.read().split()[0]}")
    except Failure:
        fleet.dump_logs(lines=80)
        raise
    finally:
        if monitor is not None:
            monitor.kill()
            monitor.wait()
        fleet.down()


def _drain(q):
    out = []
    while True:
        try:
            out.append(q.get(timeout=0.05))
        except queue.Empty:
            return out


if __name__ == "__main__":
    main()
