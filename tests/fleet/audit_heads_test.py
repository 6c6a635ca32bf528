"""Day two: ansible/collect_audit_heads.yml against the running fleet. Each
run appends the controller's latest signed head to a file on the control
node and saves its audit public key once; an export made later verifies
against those heads and against the controller's own log (its
"audit.checkpoint" lines), an export cut back to before a saved head does
not, and a changed audit key stops the playbook."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import HERE, check, log, run_scenario  # noqa: E402


def collect(fleet, heads_dir):
    render = os.path.join(HERE, "../ansible/render_local_fleet.sh")
    env = dict(os.environ, PLAYBOOK="collect_audit_heads.yml", SESAME_CONTROLLER_ADDRESS=fleet.address("ctl"))
    return fleet.exec_in("ctl", ["bash", render, fleet.hosts, fleet.build_dir,
                                 "-e", f"@{os.path.join(HERE, 'fleet-vars.yml')}",
                                 "-e", f"sesame_audit_heads_dir={heads_dir}"], env=env, timeout=600)


def lines(path):
    with open(path) as f:
        return [line for line in f.read().splitlines() if line.strip()]


def export(fleet, name):
    path = os.path.join(fleet.run_dir, name)
    fleet.sesamectl("audit", "export", "--out", path)
    return path


def verify(fleet, export_path, pubkey, *heads):
    args = ["audit", "verify", "--file", export_path, "--pubkey", pubkey]
    for h in heads:
        args += ["--head", h]
    return fleet.sesamectl(*args, check_ok=False)


def scenario(fleet):
    heads_dir = os.path.join(fleet.run_dir, "audit-heads")
    heads = os.path.join(heads_dir, "controller1.heads")
    pubkey = os.path.join(heads_dir, "controller1.pub")
    result = collect(fleet, heads_dir)
    check(result.returncode == 0, f"collect_audit_heads.yml failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    check(len(lines(heads)) == 1 and lines(heads)[0].startswith('audit.checkpoint {"record_count": '),
          f"expected one head after the first run: {lines(heads)}")
    check("BEGIN PUBLIC KEY" in open(pubkey).read(), f"{pubkey} holds no public key")

    early = export(fleet, "early.export")
    fleet.issue("openSSH", count=2)
    export(fleet, "signing.export")  # the controller signs a head over the new records
    result = collect(fleet, heads_dir)
    check(result.returncode == 0, f"second run failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    check(len(lines(heads)) >= 2, f"expected a second head: {lines(heads)}")
    log(f"{len(lines(heads))} heads kept on the control node")

    # The controller's log (what journald would ship), read before the
    # export, so that the export was made after every head in it.
    journal = os.path.join(fleet.run_dir, "journal.heads")
    with open(os.path.join(fleet.run_dir, "controller.log")) as f, open(journal, "w") as out:
        out.write(f.read())
    later = export(fleet, "later.export")
    result = verify(fleet, later, pubkey, heads, journal)
    check(result.returncode == 0, f"an honest export against the saved heads: {result.stdout} {result.stderr}")
    check("saved heads" in result.stdout, f"no heads were checked: {result.stdout}")
    log(f"later export: {result.stdout.strip()}")

    result = verify(fleet, early, pubkey, heads)
    check(result.returncode == 1 and "cut back" in result.stderr,
          f"an export from before the last saved head must fail as cut back: {result.returncode} {result.stderr}")
    log(f"early export against the later head: {result.stderr.strip()}")

    # The auditor's copy of the key is not replaced behind their back.
    private = subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519"], capture_output=True, text=True,
                             check=True).stdout
    other = subprocess.run(["openssl", "pkey", "-pubout"], input=private, capture_output=True, text=True,
                           check=True).stdout
    with open(pubkey, "w") as f:
        f.write(other)
    result = collect(fleet, heads_dir)
    check(result.returncode != 0 and "is not the one saved" in result.stdout,
          f"a changed audit key must stop the playbook:\n{result.stdout[-3000:]}")
    log("a changed audit key stops the playbook")


run_scenario(scenario)
