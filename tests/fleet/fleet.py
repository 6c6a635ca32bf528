"""The fleet test bed (bed.sh) seen from a scenario test.

    with Fleet.up(build_dir) as fleet:
        [seq] = fleet.issue("openSSH")
        fleet.knock("c1", "b1", seq)
        fleet.wait_open("c1", "b1")

Hosts are named as in the bed: "ctl", "b1".."b3" (bastion1..3), "c1", "c2".
Every wait is bounded and generous (the tests run on a loaded 2-core
machine); nothing here asserts how fast something happened, it only says
how long it took (`log`). A scenario fails by raising (`check`, `Failure`);
`run_scenario` prints the daemons' logs then and always removes the bed.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BED = os.path.join(HERE, "bed.sh")
BASTIONS = ("b1", "b2", "b3")
CLIENTS = ("c1", "c2")
OCTET = {"ctl": 10, "b1": 11, "b2": 12, "b3": 13, "ctl2": 14, "ctl3": 15, "c1": 21, "c2": 22,
         "e1": 31, "e2": 32, "e3": 33}
# The high-availability bed (bed.sh --ha): controller daemons by namespace.
CONTROLLER_NS = {"controller": "ctl", "controller2": "ctl2", "controller3": "ctl3"}
AGENT_NAME = {b: "bastion" + b[1] for b in BASTIONS}
# The bastions' OpenSSH (bed.sh): behind the nftables doors, behind TCP
# Wrappers (the hosts_allow door consoleSSH), behind the iptables command
# door (iptablesSSH).
SSH_PORT = 22
CONSOLE_SSH_PORT = 2222
COMMAND_SSH_PORT = 2200
NAME_PREFIX = "sf"  # every bed's namespaces: sf<pid><host>


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


_started = time.monotonic()


def log(message):
    print(f"[{time.monotonic() - _started:7.2f} s] {message}", flush=True)


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate until it returns something true; returns that and the
    seconds it took. Raises Failure after timeout seconds."""
    start = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise Failure(f"{what}: not after {timeout} s")
        time.sleep(interval)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_stale_beds():
    """Namespaces left by a bed whose test process is gone (killed by a
    timeout before it could clean up): their daemons are killed and the
    namespaces removed."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(NAME_PREFIX + r"(\d+)(ctl|sw|b\d|c\d)", name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Fleet:
    def __init__(self, build_dir, run_dir, prefix):
        self.build_dir = os.path.abspath(build_dir)
        self.run_dir = run_dir
        self.prefix = prefix
        self.hosts = os.path.join(run_dir, "hosts")
        # The clients' key for the bastions' sshd (root logs in with it).
        self.ssh_key = os.path.join(run_dir, "ssh", "client_key")
        self.controller_root = os.path.join(self.hosts, "controller1")
        self.pki = os.path.join(self.controller_root, "var/lib/sesame-pki")
        # Not "knockgen": that name is the method below.
        self.knockgen_path = os.path.join(self.build_dir, "bench/tools/knockgen")
        # The controllers sesamectl is given, in order (it uses the first
        # serving one): the HA bed's operator lists all three, as a real
        # operator's configuration would.
        self.controllers = ("ctl",)

    # --- life cycle -------------------------------------------------------

    @classmethod
    def up(cls, build_dir, ha=False):
        remove_stale_beds()
        run_dir = tempfile.mkdtemp(prefix="sesame-fleet.")
        fleet = cls(build_dir, run_dir, f"{NAME_PREFIX}{os.getpid()}")
        log(f"bed up in {run_dir} (namespaces {fleet.prefix}*)")
        env = dict(os.environ, BUILD_DIR=fleet.build_dir)
        try:
            result = subprocess.run(["bash", BED, "up", run_dir, fleet.prefix] + (["--ha"] if ha else []), env=env)
        except BaseException:
            # Killed (a timeout's SIGTERM) while the bed came up: subprocess.run
            # killed bed.sh before its own clean-up could run.
            fleet.down()
            raise
        if result.returncode != 0:
            fleet.dump_logs()
            fleet.down()
            raise Failure("the test bed did not come up")
        if ha:
            fleet.controllers = tuple(CONTROLLER_NS.values())
        return fleet

    def down(self):
        try:
            subprocess.run(["bash", BED, "down", self.run_dir])
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.down()
        return False

    def dump_logs(self, lines=40):
        for name in sorted(os.listdir(self.run_dir)) if os.path.isdir(self.run_dir) else []:
            if not name.endswith(".log") or name == "render.log":
                continue
            path = os.path.join(self.run_dir, name)
            with open(path, errors="replace") as f:
                tail = f.readlines()[-lines:]
            print(f"--- {name} (last {len(tail)} lines)")
            sys.stdout.writelines(tail)

    # --- addressing -------------------------------------------------------

    def netns(self, host):
        return self.prefix + host

    @staticmethod
    def address(host, v6=False):
        return f"fd5e:20::{OCTET[host]}" if v6 else f"198.18.20.{OCTET[host]}"

    def exec_in(self, host, argv, **kwargs):
        """Runs argv in host's namespace; returns the CompletedProcess."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 60)
        return subprocess.run(["ip", "netns", "exec", self.netns(host)] + list(argv), **kwargs)

    # --- sesamectl ----------------------------------------------------------

    def operator_env(self, cert=None, key=None):
        return {
            "SESAME_CONTROLLER": ",".join(f"{self.address(ns)}:7443" for ns in self.controllers),
            "SESAME_CA_CERT": os.path.join(self.controller_root, "etc/sesame/tls/ca.crt"),
            "SESAME_CERT": cert or os.path.join(self.pki, "operator/oncall.crt"),
            "SESAME_KEY": key or os.path.join(self.pki, "operator/oncall.key"),
        }

    def sesamectl(self, *args, cert=None, key=None, host="c1", check_ok=True):
        """sesamectl ARGS as the operator "oncall" (or cert/key), from host
        (a client by default: operators are not on the controller).
        Returns the CompletedProcess."""
        env = dict(os.environ, **self.operator_env(cert, key))
        argv = [os.path.join(self.controller_root, "usr/bin/sesamectl"), "--timeout", "10s"] + list(args)
        result = self.exec_in(host, argv, env=env)
        if check_ok and result.returncode != 0:
            raise Failure(f"sesamectl {' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}")
        return result

    def sesamectl_json(self, *args, **kwargs):
        return parse_json_stream(self.sesamectl("-o", "json", *args, **kwargs).stdout)

    def issue(self, door, count=1, reserve=None, for_name=None):
        """Issues sequences; returns them as dicts: id (int), door, knocks
        (list of "PORT:proto" strings, as knock takes them)."""
        args = ["sequences", "issue", "--door", door, "--count", str(count)]
        if reserve:
            args += ["--reserve", AGENT_NAME.get(reserve, reserve)]
        if for_name:
            args += ["--for", for_name]
        [response] = self.sesamectl_json(*args)
        out = []
        for s in response["sequences"]:
            knocks = [f"{k['port']}:{k['protocol']}" for k in s["knocks"]]
            out.append({"id": int(s["id"]), "door": s["door"], "knocks": knocks})
        return out

    def agents(self):
        [response] = self.sesamectl_json("agents", "list")
        return {a["name"]: a for a in response.get("agents", [])}

    def grants(self):
        [response] = self.sesamectl_json("grants", "list")
        return response.get("grants", [])

    def sequences(self, *filters):
        """`sequences list` (FILTERS: e.g. "--state", "burnt"): dicts keyed
        by sequence id (int)."""
        [response] = self.sesamectl_json("sequences", "list", *filters)
        return {int(s["id"]): s for s in response.get("sequences", [])}

    def revision(self):
        """The controller's store revision now (`stats`)."""
        [response] = self.sesamectl_json("stats")
        return int(response.get("revision", 0))

    def acked_revision(self, bastion):
        """The highest revision bastion's agent acknowledged (`agents show`)."""
        [response] = self.sesamectl_json("agents", "show", AGENT_NAME[bastion])
        return int(response.get("acked_revision", 0))

    def audit(self, last=100000):
        """The audit log's records (dicts, oldest first)."""
        return self.sesamectl_json("audit", "tail", "-n", str(last))

    def audit_where(self, what, **details):
        """Records of kind `what` whose details include every key=value."""
        return [r for r in self.audit() if r.get("what") == what and
                all(r.get("details", {}).get(k) == str(v) for k, v in details.items())]

    # --- clients ------------------------------------------------------------

    def knock(self, client, bastion, sequence, v6=False, delay_ms=10):
        """Debian's knock client from client to bastion."""
        argv = ["knock", "-6" if v6 else "-4", "-d", str(delay_ms), self.address(bastion, v6)] + sequence["knocks"]
        result = self.exec_in(client, argv)
        check(result.returncode == 0, f"knock failed: {result.stderr.strip()}")

    def knock_async(self, client, bastion, sequence, delay_ms=10):
        """Starts knock and returns the Popen (for knocks that must be
        simultaneous); wait() on it."""
        argv = ["ip", "netns", "exec", self.netns(client), "knock", "-4", "-d", str(delay_ms),
                self.address(bastion)] + sequence["knocks"]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def mac(self, host):
        out = self.exec_in(host, ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
        check(out, f"no MAC for {host}")
        return out

    def knockgen(self, client, bastion, mode, *args, max_seconds=60):
        """Raw packets from client's eth0 to bastion (knockgen MODE ARGS)."""
        argv = [self.knockgen_path, mode, "-i", "eth0", "--dst", self.address(bastion), "--dst-mac", self.mac(bastion),
                "--max-seconds", str(max_seconds)] + list(args)
        result = self.exec_in(client, argv, timeout=max_seconds + 30)
        check(result.returncode == 0, f"knockgen {mode} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def can_connect(self, client, bastion, v6=False, timeout=1.0, port=SSH_PORT):
        """True when client reaches bastion's sshd on port (22; the one
        TCP Wrappers judge is CONSOLE_SSH_PORT) and it greets. A connection
        the firewall let through has 5 s for the greeting (sshd forks and
        re-executes itself per connection; TCP Wrappers refusing closes it
        without one)."""
        code = ("import socket,sys\n"
                "try:\n"
                "    s = socket.create_connection((sys.argv[1], int(sys.argv[3])), timeout=float(sys.argv[2]))\n"
                "    s.settimeout(5)\n"
                "    sys.exit(0 if s.recv(64).startswith(b'SSH-2.0-') else 1)\n"
                "except OSError:\n"
                "    sys.exit(1)\n")
        result = self.exec_in(client, ["python3", "-c", code, self.address(bastion, v6), str(timeout), str(port)])
        return result.returncode == 0

    def wait_open(self, client, bastion, v6=False, timeout=20):
        _, took = wait_until(lambda: self.can_connect(client, bastion, v6), timeout,
                             f"{client} connecting to {bastion}:22")
        log(f"{client} -> {bastion}:22 open after {took:.2f} s")
        return took

    def wait_closed(self, client, bastion, v6=False, timeout=30):
        _, took = wait_until(lambda: not self.can_connect(client, bastion, v6), timeout,
                             f"{client} shut out of {bastion}:22")
        log(f"{client} -> {bastion}:22 closed after {took:.2f} s")
        return took

    def check_shut(self, client, bastion, seconds, why):
        """Fails if client reaches bastion:22 at any probe during the next
        `seconds` (a door that must stay shut, e.g. after a refused knock)."""
        deadline = time.monotonic() + seconds
        probes = 0
        while True:
            check(not self.can_connect(client, bastion), f"{client} reaches {bastion}:22: {why}")
            probes += 1
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        log(f"{client} -> {bastion}:22 stayed shut for {seconds} s ({probes} probes)")

    # --- faults -------------------------------------------------------------

    def pid(self, daemon):
        """daemon: "controller" (controller2, controller3 and the etcd
        members e1-e3 on the HA bed) or a bastion ("b1") for its agent."""
        name = f"{daemon}-agent.pid" if daemon in BASTIONS else f"{daemon}.pid"
        with open(os.path.join(self.run_dir, name)) as f:
            return int(f.read().strip())

    def kill(self, daemon, sig=signal.SIGKILL):
        pid = self.pid(daemon)
        os.kill(pid, sig)
        wait_until(lambda: not _pid_alive(pid) or _is_zombie(pid), 30, f"{daemon} ({pid}) exiting")
        log(f"{daemon} killed with {signal.Signals(sig).name}")

    def start(self, daemon):
        """Starts the controller or a bastion's agent again, as the bed did."""
        env = dict(os.environ, BUILD_DIR=self.build_dir)
        result = subprocess.run(["bash", BED, "start", self.run_dir, daemon], env=env)
        check(result.returncode == 0, f"restarting {daemon} failed")
        log(f"{daemon} started again")

    def wait_connected(self, bastions=BASTIONS, timeout=60):
        names = [AGENT_NAME[b] for b in bastions]

        def all_connected():
            try:
                agents = self.agents()
            except Failure:
                return False
            return all(agents.get(n, {}).get("connected") for n in names)

        _, took = wait_until(all_connected, timeout, f"agents {', '.join(names)} connected", interval=0.2)
        log(f"{', '.join(names)} connected after {took:.2f} s")

    def wait_synced(self, bastions=BASTIONS, timeout=30):
        """Waits until the bastions' agents acknowledged the controller's
        revision as of this call (an agent acknowledges once its matcher has
        what it was sent): a sequence issued before is recognised there.
        Returns the seconds it took."""
        names = [AGENT_NAME[b] for b in bastions]
        target = max(int(a.get("revision", 0)) for a in self.agents().values())

        def synced():
            agents = self.agents()
            return all(int(agents.get(n, {}).get("acked_revision", 0)) >= target for n in names)

        _, took = wait_until(synced, timeout, f"agents {', '.join(names)} at revision {target}", interval=0.02)
        return took

    def set_link(self, bastion, up):
        """Plugs a bastion into the bridge, or pulls it out."""
        subprocess.run(["ip", "-n", self.netns("sw"), "link", "set", bastion, "up" if up else "down"], check=True)
        log(f"{bastion}'s link {'up' if up else 'down'}")

    def nft_grants(self, bastion):
        """sesame's nftables table on bastion, as text."""
        return self.exec_in(bastion, ["nft", "list", "table", "inet", "sesame"]).stdout


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def parse_json_stream(text):
    """sesamectl -o json prints one JSON document per result, one after
    another (audit tail: one per record)."""
    decoder = json.JSONDecoder()
    out, i = [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        value, i = decoder.raw_decode(text, i)
        out.append(value)


def run_scenario(scenario, ha=False):
    """The main of a scenario script: `scenario(fleet)` on a fresh bed;
    exit 0 when it passes, 1 (with the daemons' logs) when it fails, 77
    (ctest: skipped) when this machine cannot run the bed."""
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} BUILD_DIR", file=sys.stderr)
        sys.exit(2)
    if os.geteuid() != 0:
        print("SKIP: the fleet test bed needs root (network namespaces)")
        sys.exit(77)
    for tool in ("ip", "nft", "knock", "ansible-playbook"):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} is not installed (deploy/install-deps.sh)")
            sys.exit(77)
    # A timeout's SIGTERM still removes the bed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    fleet = None
    try:
        fleet = Fleet.up(sys.argv[1], ha=ha)
        scenario(fleet)
    except (Failure, subprocess.TimeoutExpired) as e:
        print(f"FAIL: {e}")
        if fleet:
            fleet.dump_logs()
        sys.exit(1)
    finally:
        if fleet:
            fleet.down()
    log("PASS")
    sys.exit(0)
