"""Day two: ansible/replenish_sequences.yml against the running fleet. The
playbook (local connection, run in the controller's namespace as Ansible
would run on the controller) issues sequences to the operators and tops up
each bastion's offline reserve to its door's offline_reserve; each batch is
saved 0600 on the control node. A saved reserve sequence opens its own
bastion while the controller is down; a second run tops up exactly what was
used."""

import glob
import json
import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import AGENT_NAME, BASTIONS, HERE, check, log, run_scenario  # noqa: E402

RESERVE = 3  # offline_reserve of door openSSH in fleet-vars.yml


def replenish(fleet, out_dir):
    render = os.path.join(HERE, "../ansible/render_local_fleet.sh")
    env = dict(os.environ, PLAYBOOK="replenish_sequences.yml", SESAME_CONTROLLER_ADDRESS=fleet.address("ctl"))
    result = fleet.exec_in("ctl", ["bash", render, fleet.hosts, fleet.build_dir,
                                   "-e", f"@{os.path.join(HERE, 'fleet-vars.yml')}",
                                   "-e", f"sesame_replenish_dir={out_dir}"], env=env, timeout=600)
    check(result.returncode == 0, f"replenish_sequences.yml failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")


def unused_reserve(fleet, bastion):
    [listing] = fleet.sesamectl_json("sequences", "list", "--door", "openSSH", "--reserve", AGENT_NAME[bastion])
    return [s for s in listing.get("sequences", []) if s.get("state") != "burnt"]


def reserve_batches(out_dir, bastion):
    knocks = []
    for path in sorted(glob.glob(os.path.join(out_dir, f"reserve-bastion{bastion[1]}-openSSH-*.json"))):
        check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, f"{path} is not 0600")
        with open(path) as f:
            for s in json.load(f)["sequences"]:
                knocks.append({"id": int(s["id"]), "knocks": [
                    f"{k['port']}:{k['protocol']}" for k in s["knocks"]]})
    return knocks


def scenario(fleet):
    out_dir = os.path.join(fleet.run_dir, "sequences")
    replenish(fleet, out_dir)
    operator_batches = [p for p in glob.glob(os.path.join(out_dir, "*.json"))
                        if not os.path.basename(p).startswith("reserve-")]
    check(len(operator_batches) == 2 * 3, f"expected a batch per operator and door, got {len(operator_batches)}")
    for b in BASTIONS:
        check(len(unused_reserve(fleet, b)) == RESERVE, f"{b}'s reserve is not {RESERVE} after the first run")
        check(len(reserve_batches(out_dir, b)) == RESERVE, f"{b}'s reserve batch is not saved")
    fleet.wait_synced()

    # Break glass: the controller is down, a saved reserve sequence opens b1.
    used = reserve_batches(out_dir, "b1")[0]
    fleet.kill("controller")
    fleet.knock("c1", "b1", used)
    fleet.wait_open("c1", "b1")
    fleet.start("controller")
    fleet.wait_connected()
    from fleet import wait_until  # noqa: E402
    wait_until(lambda: len(unused_reserve(fleet, "b1")) == RESERVE - 1, 60, "the used reserve sequence burnt")

    replenish(fleet, out_dir)
    for b in BASTIONS:
        check(len(unused_reserve(fleet, b)) == RESERVE, f"{b}'s reserve not topped up to {RESERVE}")
    check(len(reserve_batches(out_dir, "b1")) == RESERVE + 1, "the second run did not issue exactly one for b1")
    check(len(reserve_batches(out_dir, "b2")) == RESERVE, "the second run issued for b2, whose reserve was full")
    log("reserve topped up: one new sequence for bastion1, none for the others")


run_scenario(scenario)
