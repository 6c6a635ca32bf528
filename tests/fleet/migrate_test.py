"""Growing from one controller to etcd: the single-controller bed runs and
records (a knock opened, a replay refused); the controller is stopped, its
exported audit chain verifies; `sesame-controller migrate --from
sqlite:STATE --to etcd` copies the store into an etcd member (mutual TLS
with its own CA from sesame-pki, in the controller's namespace); the
controller comes back on etcd; its chain verifies online and exported
offline, it still holds every record of before, the used sequence is still
burnt and a new sequence still opens the door."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from controller_down_test import opened  # noqa: E402
from fleet import check, log, run_scenario, wait_until  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))


def export_and_verify(fleet, name):
    export = os.path.join(fleet.run_dir, name)
    pubkey = os.path.join(fleet.run_dir, "audit.pub")
    fleet.sesamectl("audit", "export", "--out", export)
    with open(pubkey, "w") as f:
        f.write(fleet.sesamectl("audit", "pubkey").stdout)
    result = fleet.sesamectl("audit", "verify", "--file", export, "--pubkey", pubkey, check_ok=False)
    check(result.returncode == 0, f"offline verify of {name}: {result.stdout} {result.stderr}")
    with open(export) as f:
        records = [line for line in f if line.startswith("R\t")]
    log(f"{name}: {result.stdout.strip()}")
    return records


def start_etcd(fleet):
    """One etcd member in the controller's namespace, on its loopback, with
    its own CA; the pid goes where bed.sh down finds it."""
    pki = os.path.join(REPO, "deploy/pki/sesame-pki")
    epki = os.path.join(fleet.run_dir, "etcd-pki")
    for argv in (["init", epki], ["etcd-member", epki, "etcd1", "--ip", "127.0.0.1"],
                 ["etcd-client", epki, "controller1"]):
        subprocess.run([pki] + argv, check=True, capture_output=True)
    pidfile = os.path.join(fleet.run_dir, "etcd1.pid")
    with open(os.path.join(fleet.run_dir, "created"), "a") as f:
        f.write(f"pidfile {pidfile}\n")
    member = ["--cert-file", f"{epki}/etcd-member/etcd1.crt", "--key-file", f"{epki}/etcd-member/etcd1.key",
              "--trusted-ca-file", f"{epki}/ca.crt", "--client-cert-auth"]
    with open(os.path.join(fleet.run_dir, "etcd1.log"), "a") as log_file:
        etcd = subprocess.Popen(["ip", "netns", "exec", fleet.netns("ctl"), "etcd", "--name", "etcd1",
                                 "--data-dir", os.path.join(fleet.run_dir, "etcd1.etcd"),
                                 "--listen-client-urls", "https://127.0.0.1:2379",
                                 "--advertise-client-urls", "https://127.0.0.1:2379",
                                 "--listen-peer-urls", "http://127.0.0.1:2380",
                                 "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                                 "--initial-cluster", "etcd1=http://127.0.0.1:2380",
                                 "--logger", "zap", "--log-level", "warn"] + member,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    with open(pidfile, "w") as f:
        f.write(str(etcd.pid))
    return epki


def scenario(fleet):
    fleet.wait_connected()
    [used] = fleet.issue("openSSH", for_name="before")
    fleet.wait_synced(("b1",))
    fleet.knock("c1", "b1", used)
    fleet.wait_open("c1", "b1")
    fleet.knock("c2", "b1", used)
    wait_until(lambda: any(r.get("what") == "knock.replay" for r in fleet.audit()), 30, "the replay audited")
    before = export_and_verify(fleet, "before.export")

    fleet.kill("controller", sig=15)  # SIGTERM: a clean stop signs the chain's end
    epki = start_etcd(fleet)
    conf = os.path.join(fleet.controller_root, "etc/sesame/controller.conf")
    with open(conf) as f:
        text = f.read()
    store = ("[controller]\n  Name = controller1\n  Store = etcd\n  Etcd_Endpoints = https://127.0.0.1:2379\n"
             f"  Etcd_CaCert = {epki}/ca.crt\n  Etcd_Cert = {epki}/etcd-client/controller1.crt\n"
             f"  Etcd_Key = {epki}/etcd-client/controller1.key\n")
    with open(conf, "w") as f:
        f.write(text.replace("[controller]\n", store, 1))
    state = os.path.join(fleet.controller_root, "var/lib/sesame-controller")
    binary = os.path.join(fleet.controller_root, "usr/sbin/sesame-controller")

    def migrated():
        result = fleet.exec_in("ctl", [binary, "--config", conf, "migrate", "--from", f"sqlite:{state}",
                                       "--to", "etcd"])
        return result if result.returncode == 0 else None
    result, took = wait_until(migrated, 60, "migrate (etcd starting)", interval=0.5)
    log(f"migrate: {result.stdout.strip()}")

    fleet.start("controller")
    fleet.wait_connected()
    check(fleet.sesamectl("audit", "verify", check_ok=False).returncode == 0, "audit verify on etcd failed")
    after = export_and_verify(fleet, "after.export")
    check(len(after) > len(before) and after[:len(before)] == before,
          "the records of before the migration are not the first records after it")
    sequences = fleet.sequences()
    check(sequences[used["id"]]["state"] == "burnt", "the used sequence is not burnt after migrating")
    [fresh] = fleet.issue("openSSH", for_name="after")
    check(fresh["id"] > used["id"], f"sequence ids went back: {fresh['id']} after {used['id']}")
    fleet.wait_synced(("b2",))
    fleet.knock("c1", "b2", fresh)
    fleet.wait_open("c1", "b2")
    check(len(opened(fleet.audit(), fresh)) == 1, "the knock after the migration is not audited once")
    log(f"migrated in {took:.1f} s; {len(before)} records before, {len(after)} after, the same chain continued")


if __name__ == "__main__":
    run_scenario(scenario)
