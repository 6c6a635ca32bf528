"""Scenario 1: an operator issues a sequence with sesamectl and knocks on
bastion1 with Debian's knock client. Before the knock nobody reaches b1:22;
after it the knocking client does (and it says how long that took), other
clients and the other bastions stay shut, and after the door's TTL b1 is
shut again. A fleet-wide door opens every bastion at once; IPv6 works the
same; a door that opens through TCP Wrappers is checked with tcpdmatch and
with the bastion's own sshd (Debian's OpenSSH, which reads hosts.allow)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import BASTIONS, CONSOLE_SSH_PORT, check, log, run_scenario, wait_until  # noqa: E402


def tcpdmatch(fleet, bastion, client):
    """tcpdmatch's verdict for sshd from client, with the bastion's own
    hosts.allow and hosts.deny (as Ansible rendered them, plus the agent's
    include file)."""
    etc = os.path.join(fleet.hosts, f"bastion{bastion[1]}", "etc")
    result = fleet.exec_in(bastion, ["sh", "-c", f"cd {etc} && tcpdmatch -d sshd {fleet.address(client)}"])
    verdict = [line for line in result.stdout.splitlines() if line.startswith("access:")]
    check(verdict, f"tcpdmatch said nothing useful: {result.stdout} {result.stderr}")
    return verdict[-1].split()[-1]


def scenario(fleet):
    [seq] = fleet.issue("openSSH", for_name="alice")
    for b in BASTIONS:
        check(not fleet.can_connect("c1", b), f"c1 reaches {b}:22 before any knock")
    fleet.knock("c1", "b1", seq)
    fleet.wait_open("c1", "b1")
    for b in ("b2", "b3"):
        check(not fleet.can_connect("c1", b), f"a knock on b1 opened {b} too (the door is not fleet-wide)")
    check(not fleet.can_connect("c2", "b1"), "a knock from c1 opened b1 for c2")
    [grant] = [g for g in fleet.grants() if g.get("address") == fleet.address("c1")]
    log(f"grant {grant.get('id')} on {grant.get('agents') or grant.get('where')}, expires {grant.get('expires')}")
    check(fleet.audit_where("knock.opened", sequence=seq["id"]), "no knock.opened record for the sequence")
    fleet.wait_closed("c1", "b1", timeout=60)  # the door's TTL is 8 s

    # IPv6, from the other client.
    [seq6] = fleet.issue("openSSH")
    fleet.knock("c2", "b2", seq6, v6=True)
    fleet.wait_open("c2", "b2", v6=True)
    check(not fleet.can_connect("c2", "b1", v6=True), "an IPv6 knock on b2 opened b1")

    # A fleet-wide door: one knock, every bastion.
    [wide] = fleet.issue("fleetSSH")
    fleet.knock("c1", "b3", wide)
    for b in BASTIONS:
        fleet.wait_open("c1", b)
    check(not fleet.can_connect("c2", "b1"), "a fleet-wide grant for c1 admitted c2")

    # TCP Wrappers: consoleSSH opens through hosts.allow on the bastion
    # knocked; the default-deny block in hosts.deny shuts everyone else.
    # The bastions' sshd on CONSOLE_SSH_PORT reads those files itself
    # (Debian's sshd links libwrap): it greets only whom they admit.
    def console(client, bastion):
        return fleet.can_connect(client, bastion, port=CONSOLE_SSH_PORT)
    check(tcpdmatch(fleet, "b3", "c2") == "denied", "tcpdmatch grants c2 sshd on b3 before its knock")
    check(not console("c2", "b3"), "b3's sshd greets c2 before its knock")
    [seq] = fleet.issue("consoleSSH")
    fleet.knock("c2", "b3", seq)
    _, took = wait_until(lambda: tcpdmatch(fleet, "b3", "c2") == "granted", 20, "hosts.allow granting c2 on b3")
    log(f"tcpdmatch grants c2 sshd on b3 after {took:.2f} s")
    check(console("c2", "b3"), "b3's sshd does not greet c2 although hosts.allow grants it")
    check(tcpdmatch(fleet, "b3", "c1") == "denied", "the hosts.allow grant for c2 admits c1")
    check(not console("c1", "b3"), "b3's sshd greets c1 (the grant is c2's)")
    check(tcpdmatch(fleet, "b2", "c2") == "denied", "a consoleSSH knock on b3 granted c2 on b2")
    check(not console("c2", "b2"), "b2's sshd greets c2 (the knock was on b3)")
    wait_until(lambda: tcpdmatch(fleet, "b3", "c2") == "denied", 60, "the hosts.allow grant expiring")
    check(not console("c2", "b3"), "b3's sshd still greets c2 after the grant expired")
    log("b3's own sshd (TCP Wrappers) greeted c2 during the grant only")


run_scenario(scenario)
