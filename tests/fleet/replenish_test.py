"""Day two: the controller keeps each bastion's offline reserve topped up
to its door's offline_reserve on its own, and
ansible/replenish_sequences.yml (local connection, run in the controller's
namespace as Ansible would run on the controller) issues sequences to the
operators and claims the reserve sequences nobody holds yet; each batch is
saved 0600 on the control node. A saved reserve sequence opens its own
bastion while the controller is down; back, the controller replaces it, and
a second run claims exactly that one."""

import glob
import json
import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import AGENT_NAME, BASTIONS, HERE, check, log, run_scenario, wait_until  # noqa: E402

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


def topped_up(fleet, what):
    wait_until(lambda: all(len(unused_reserve(fleet, b)) == RESERVE for b in BASTIONS), 60, what)


def scenario(fleet):
    out_dir = os.path.join(fleet.run_dir, "sequences")
    topped_up(fleet, f"the controller keeping a reserve of {RESERVE} for every bastion")
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
    wait_until(lambda: fleet.sequences().get(used["id"], {}).get("state") == "burnt", 60,
               "the used reserve sequence burnt")
    topped_up(fleet, "the controller replacing the used reserve sequence")

    replenish(fleet, out_dir)
    check(len(reserve_batches(out_dir, "b1")) == RESERVE + 1, "the second run did not claim exactly one for b1")
    check(len(reserve_batches(out_dir, "b2")) == RESERVE, "the second run claimed for b2, whose reserve was held")
    log("reserve topped up by the controller; the second run claimed its one new sequence for bastion1")


run_scenario(scenario)
