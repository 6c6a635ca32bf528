"""Scenario: an SSH session outlives its door. The point of a short grant is
that the door shuts seconds after the engineer logged in while the session
goes on. For each family of backends: nftables (the managed door openSSH),
TCP Wrappers (consoleSSH, the bastion's sshd on CONSOLE_SSH_PORT) and a
knockd command door with iptables (iptablesSSH, COMMAND_SSH_PORT): knock, log in with a real
ssh during the grant, run a command that prints twice a second, let the
grant expire; a new connection is refused, the session still prints, and it
ends when the client ends it. `sesamectl grants revoke` does not cut live
sessions either (controller/README.md); `grants revoke --kill-sessions` does:
a session on an nftables door and one behind TCP Wrappers end within
seconds, the bastion audits what it ended, and another client's session on
the same bastion goes on."""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import COMMAND_SSH_PORT, CONSOLE_SSH_PORT, SSH_PORT, check, log, run_scenario, wait_until  # noqa: E402

SESSION_SECONDS = 90  # bounded: the remote loop ends by itself


class Session:
    """`ssh root@BASTION` from CLIENT running a loop that prints a line
    every half second; counts the lines as they come."""

    def __init__(self, fleet, client, bastion, port):
        loop = f"for i in $(seq 1 {2 * SESSION_SECONDS}); do echo tick $i; sleep 0.5; done"
        argv = ["ip", "netns", "exec", fleet.netns(client), "ssh", "-i", fleet.ssh_key, "-p", str(port),
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"root@{fleet.address(bastion)}", loop]
        self.ticks = 0
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            if line.startswith("tick "):
                self.ticks += 1

    def alive(self):
        return self.process.poll() is None

    def end(self):
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(5)


def outlives(fleet, what, client, bastion, port, open_door, still_open):
    open_door()
    wait_until(lambda: still_open(), 20, f"{what}: the door opening")
    session = Session(fleet, client, bastion, port)
    try:
        wait_until(lambda: session.ticks > 0 or not session.alive(), 30, f"{what}: logging in over ssh")
        check(session.alive() and session.ticks > 0,
              f"{what}: ssh login failed: {session.process.stderr.read() if not session.alive() else ''}")
        _, closed = wait_until(lambda: not still_open(), 60, f"{what}: the grant expiring")
        at_close = session.ticks
        time.sleep(3)
        check(session.alive(), f"{what}: the session ended when the door closed")
        check(session.ticks >= at_close + 4,
              f"{what}: the session stopped printing when the door closed ({at_close} -> {session.ticks})")
        check(not still_open(), f"{what}: a new connection is admitted after the grant expired")
        log(f"{what}: logged in during the grant; {closed:.1f} s later the door shut to new connections, "
            f"the session printed on ({at_close} -> {session.ticks} lines)")
    finally:
        session.end()


def killed_by_revoke(fleet, what, client, bastion, port, sequence, door_open, bystander):
    """Knock, log in, revoke the grant with --kill-sessions: the session
    ends, the door is shut, the bastion audits the socket it ended; the
    bystander's session (another client, same bastion) prints on."""
    fleet.knock(client, bastion, sequence)
    wait_until(door_open, 20, f"{what}: the door opening")
    session = Session(fleet, client, bastion, port)
    try:
        wait_until(lambda: session.ticks > 0 or not session.alive(), 30, f"{what}: logging in over ssh")
        check(session.alive() and session.ticks > 0, f"{what}: ssh login failed")
        before = bystander.ticks
        ordered = time.monotonic()
        fleet.sesamectl("grants", "revoke", "--ip", fleet.address(client), "--kill-sessions")
        wait_until(lambda: not session.alive(), 20, f"{what}: the session ending after the revocation")
        took = time.monotonic() - ordered
        check(not door_open(), f"{what}: the door is still open after the revocation")
        [killed], _ = wait_until(lambda: fleet.audit_where("grant.sessions_killed", address=fleet.address(client),
                                                           door=sequence["door"]),
                                 20, f"{what}: the bastion's grant.sessions_killed record")
        check(int(killed["details"]["sockets"]) >= 1 and "error" not in killed["details"],
              f"{what}: the bastion reported {killed['details']}")
        time.sleep(1)
        check(bystander.alive() and bystander.ticks > before,
              f"{what}: another client's session on the bastion ended too")
        log(f"{what}: revoke --kill-sessions ended the session {took:.2f} s after the command "
            f"({killed['details']['sockets']} socket(s), {killed['details']['conntrack_entries']} conntrack "
            f"entries); another client's session printed on")
    finally:
        session.end()


def scenario(fleet):
    def connects(client, bastion, port=SSH_PORT):
        return lambda: fleet.can_connect(client, bastion, port=port)

    [seq] = fleet.issue("openSSH", for_name="session")
    outlives(fleet, "nftables (openSSH)", "c1", "b1", SSH_PORT,
             lambda: fleet.knock("c1", "b1", seq), connects("c1", "b1"))

    [console] = fleet.issue("consoleSSH", for_name="session")
    outlives(fleet, "TCP Wrappers (consoleSSH)", "c2", "b3", CONSOLE_SSH_PORT,
             lambda: fleet.knock("c2", "b3", console), connects("c2", "b3", CONSOLE_SSH_PORT))

    classic = {"knocks": ["7100:tcp", "8100:tcp", "9100:tcp"]}
    outlives(fleet, "command with iptables (iptablesSSH)", "c2", "b2", COMMAND_SSH_PORT,
             lambda: fleet.knock("c2", "b2", classic), connects("c2", "b2", COMMAND_SSH_PORT))

    # The bystander: c2 logged in to b1 and b3 through a grant of its own,
    # left open while c1's grants are revoked.
    [c2_b1] = fleet.issue("openSSH", for_name="bystander")
    fleet.knock("c2", "b1", c2_b1)
    fleet.wait_open("c2", "b1")
    [seq, console] = fleet.issue("openSSH", for_name="session") + fleet.issue("consoleSSH", for_name="session")
    bystander = Session(fleet, "c2", "b1", SSH_PORT)
    try:
        wait_until(lambda: bystander.ticks > 0, 30, "the bystander logging in")
        killed_by_revoke(fleet, "nftables (openSSH)", "c1", "b1", SSH_PORT, seq, connects("c1", "b1"), bystander)
        [console_bystander] = fleet.issue("consoleSSH", for_name="bystander")
        fleet.knock("c2", "b3", console_bystander)
        wait_until(connects("c2", "b3", CONSOLE_SSH_PORT), 20, "the bystander's door on b3")
        on_b3 = Session(fleet, "c2", "b3", CONSOLE_SSH_PORT)
        try:
            wait_until(lambda: on_b3.ticks > 0, 30, "the bystander logging in to b3")
            killed_by_revoke(fleet, "TCP Wrappers (consoleSSH)", "c1", "b3", CONSOLE_SSH_PORT, console,
                             connects("c1", "b3", CONSOLE_SSH_PORT), on_b3)
        finally:
            on_b3.end()
    finally:
        bystander.end()


run_scenario(scenario)
