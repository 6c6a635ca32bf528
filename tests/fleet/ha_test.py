"""Controllers in high availability (bed.sh --ha): three etcd members, three
controllers sharing them, bastion1 starting on controller1, bastion2 on
controller2, bastion3 on controller3. On one bed, in this order:

1. Race across controllers: a fresh sequence knocked on bastion1 and on
   bastion2 (two controllers) at once, 20 rounds: one grant each round, the
   loser audited as a replay (race_test.py's round).
2. controller2 SIGKILLed in the middle of a stream of knocks on bastion2:
   the agent moves to another controller; every sequence opened exactly
   once, every spooled record in the audit once.
3. The etcd leader SIGKILLed during a stream of knocks: they keep opening
   (an answer lost with the leader is retried, never doubled); the longest
   time without a consumption is reported.
4. controller3 cut off from etcd (its packets to the members dropped): it
   turns NOT_SERVING and sheds bastion3, which moves on; back, it serves
   again.
5. Quorum lost (two members killed): every controller NOT_SERVING, a
   bastion admits through its offline reserve; once quorum is back the
   reserve use is audited once and the sequence is burnt.
Then `audit verify` (online and an export offline) sees one chain."""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from controller_down_test import check_no_duplicates, index, opened, verify_audit  # noqa: E402
from fleet import AGENT_NAME, CONTROLLER_NS, check, log, run_scenario, wait_until  # noqa: E402
from race_test import race_once  # noqa: E402

RACE_ROUNDS = 20
MEMBERS = ("e1", "e2", "e3")


def session_controller(fleet, bastion):
    """The namespace of the controller bastion's agent holds its session
    with now (from its log), or None."""
    with open(os.path.join(fleet.run_dir, f"{bastion}-agent.log"), errors="replace") as f:
        opened_with = re.findall(r"controller session open with ([0-9.]+):", f.read())
    if not opened_with:
        return None
    return next((ns for ns in CONTROLLER_NS.values() if fleet.address(ns) == opened_with[-1]), None)


def health(fleet, controller_ns):
    """SERVING / NOT_SERVING / unreachable, as sesamectl health says."""
    saved, fleet.controllers = fleet.controllers, (controller_ns,)
    try:
        result = fleet.sesamectl("health", check_ok=False)
    finally:
        fleet.controllers = saved
    text = (result.stdout + result.stderr).upper()
    if "NOT_SERVING" in text:
        return "NOT_SERVING"
    return "SERVING" if result.returncode == 0 else "unreachable"


def etcdctl(fleet, *args, member="e1"):
    tls = os.path.join(fleet.hosts, "controller1/etc/sesame/etcd")
    endpoints = ",".join(f"https://{fleet.address(m)}:2379" for m in MEMBERS)
    return fleet.exec_in(member, ["env", "ETCDCTL_API=3", "etcdctl", "--command-timeout=3s", "--endpoints", endpoints,
                                  "--cacert", f"{tls}/ca.crt", "--cert", f"{tls}/controller.crt",
                                  "--key", f"{tls}/controller.key", *args])


def etcd_leader(fleet, alive=MEMBERS):
    result = etcdctl(fleet, "endpoint", "status", member=alive[0])
    for line in result.stdout.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) > 4 and fields[4] == "true":
            return next(m for m in MEMBERS if f"{fleet.address(m)}:" in fields[0])
    return None


def knock_stream(fleet, bastion, sequences, pause, during=None, at=None):
    """Knocks each sequence on bastion from c1, pause seconds apart; calls
    during() before the knock number at."""
    for i, seq in enumerate(sequences):
        if during and i == at:
            during()
        fleet.knock("c1", bastion, seq)
        time.sleep(pause)


def each_opened_once(fleet, sequences, timeout=90):
    def all_there():
        audit = fleet.audit()
        return audit if all(opened(audit, s) for s in sequences) else None
    audit, took = wait_until(all_there, timeout, f"{len(sequences)} knocks in the audit log", interval=0.5)
    for s in sequences:
        check(len(opened(audit, s)) == 1, f"sequence {s['id']}: {len(opened(audit, s))} knock.opened records")
    return audit, took


def race_across_controllers(fleet):
    check(session_controller(fleet, "b1") == "ctl" and session_controller(fleet, "b2") == "ctl2",
          f"bastion1 on {session_controller(fleet, 'b1')}, bastion2 on {session_controller(fleet, 'b2')}")
    wins = {}
    for n in range(1, RACE_ROUNDS + 1):
        winner, _, _ = race_once(fleet, n)
        wins[winner] = wins.get(winner, 0) + 1
    log(f"1. race across controllers, {RACE_ROUNDS} rounds: one grant each, the loser a replay; wins {wins}")


def controller_killed_in_a_stream(fleet):
    sequences = fleet.issue("openSSH", count=12, for_name="stream")
    fleet.wait_synced(("b2",))
    knock_stream(fleet, "b2", sequences, 0.3, during=lambda: fleet.kill("controller2"), at=6)
    moved, took = wait_until(lambda: session_controller(fleet, "b2") not in (None, "ctl2"), 30,
                             "bastion2 moving to another controller", interval=0.2)
    audit, _ = each_opened_once(fleet, sequences)
    log(f"2. controller2 killed mid-stream: bastion2 on {session_controller(fleet, 'b2')}; "
        f"12 knocks opened once each")
    fleet.start("controller2")
    return audit


def etcd_leader_killed(fleet):
    leader = etcd_leader(fleet)
    check(leader is not None, "no etcd leader found")
    sequences = fleet.issue("openSSH", count=10, for_name="leader")
    fleet.wait_synced(("b1",))
    knock_stream(fleet, "b1", sequences, 0.3, during=lambda: fleet.kill(leader), at=3)
    audit, _ = each_opened_once(fleet, sequences)
    times = sorted(r["time"] for s in sequences for r in opened(audit, s))
    gaps = [(time_of(b) - time_of(a)) for a, b in zip(times, times[1:])]
    log(f"3. etcd leader {leader} killed: 10 knocks opened once each; longest time without a consumption "
        f"{max(gaps):.2f} s (knocks 0.3 s apart)")
    fleet.start(leader)


def time_of(rfc3339):
    from datetime import datetime
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def controller_cut_off(fleet):
    # Usually controller3, bastion3's first; under load the etcd leader's
    # death in scenario 3 may have made it shed bastion3 to another one.
    cut = session_controller(fleet, "b3")
    check(cut is not None, "bastion3 has no controller session")
    members = ", ".join(fleet.address(m) for m in MEMBERS)
    rule = f"table inet cut {{\n chain out {{\n type filter hook output priority 0;\n ip daddr {{ {members} }} drop\n }}\n}}\n"
    result = fleet.exec_in(cut, ["nft", "-f", "-"], input=rule)
    check(result.returncode == 0, f"nft: {result.stderr}")
    _, took = wait_until(lambda: health(fleet, cut) == "NOT_SERVING", 60, f"{cut} NOT_SERVING")
    _, moved = wait_until(lambda: session_controller(fleet, "b3") not in (None, cut), 30,
                          f"bastion3 leaving {cut}", interval=0.2)
    [seq] = fleet.issue("openSSH", for_name="cutoff")
    fleet.wait_synced(("b3",))
    fleet.knock("c1", "b3", seq)
    fleet.wait_open("c1", "b3")
    fleet.exec_in(cut, ["nft", "delete", "table", "inet", "cut"])
    wait_until(lambda: health(fleet, cut) == "SERVING", 60, f"{cut} serving again")
    log(f"4. {cut} (bastion3's controller) cut off from etcd: NOT_SERVING after {took:.1f} s, bastion3 moved in "
        f"{moved:.1f} s and opened through {session_controller(fleet, 'b3')}; serving again once reconnected")


def quorum_lost(fleet):
    [reserve] = fleet.issue("openSSH", reserve="b1")
    wait_until(lambda: fleet.sequences().get(reserve["id"], {}).get("state") == "live", 60,
               "bastion1 holding its reserve sequence")
    before = max(index(r) for r in fleet.audit())
    down = [m for m in MEMBERS if m != etcd_leader(fleet)][:1] + [etcd_leader(fleet)]
    for m in down:
        fleet.kill(m)
    for ns in CONTROLLER_NS.values():
        wait_until(lambda: health(fleet, ns) == "NOT_SERVING", 60, f"{ns} NOT_SERVING without quorum")
    fleet.knock("c1", "b1", reserve)
    fleet.wait_open("c1", "b1")
    for m in down:
        fleet.start(m)
    for ns in CONTROLLER_NS.values():
        wait_until(lambda: health(fleet, ns) == "SERVING", 90, f"{ns} serving once quorum is back")
    audit, took = each_opened_once(fleet, [reserve])
    check_no_duplicates(audit, before)
    burnt = fleet.sequences().get(reserve["id"], {})
    check(burnt.get("state") == "burnt", f"the reserve sequence is {burnt.get('state')}")
    log(f"5. quorum lost ({', '.join(down)} killed): every controller NOT_SERVING, bastion1 opened through its "
        f"reserve; back, the use is audited once ({took:.1f} s) and the sequence burnt")


def scenario(fleet):
    fleet.wait_connected()
    race_across_controllers(fleet)
    controller_killed_in_a_stream(fleet)
    fleet.wait_connected()
    etcd_leader_killed(fleet)
    controller_cut_off(fleet)
    fleet.wait_connected()
    quorum_lost(fleet)
    fleet.wait_connected()
    verify_audit(fleet)


if __name__ == "__main__":
    run_scenario(scenario, ha=True)
