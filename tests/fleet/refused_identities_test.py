"""Scenario 8: wrong certificates are refused, and what the controller can
see of a refusal is audited.

(a) sesamectl with an operator certificate of another CA: refused in the TLS
    handshake, audited as "tls.refused" (stage handshake, reason "unknown
    CA", its subject and serial).
(b) sesamectl with bastion1's agent certificate: refused (exit 4) by
    AdminService, audited as "admin.refused" by agent:bastion1; a grant it
    tries to open does not exist.
(c) another agent's name: a second sesame-agent holding bastion1's
    certificate while bastion1 is connected takes the session over, and the
    controller audits every replacement ("agent.session_replaced", with the
    peer address) so it is never silent; once it is gone bastion1 is back
    and admits knocks. An agent configured as AgentName=bastion1 with
    bastion2's certificate refuses to start.
(d) an operator certificate that worked, revoked with sesame-pki (revoke,
    the CRL copied into the controller's CRL directory as the sesame_pki
    role does, no restart): refused (exit 4) within seconds, audited as
    "tls.refused" (stage call, reason "revoked", from the caller's address).

A client refused inside the TLS handshake (a) cannot tell that from a
dropped connection: sesamectl says "controller unreachable" (exit 3)."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import BASTIONS, Failure, check, log, run_scenario, wait_until  # noqa: E402

EXIT_UNREACHABLE, EXIT_REFUSED = 3, 4


def sesame_pki(fleet, *args):
    tool = os.path.join(fleet.controller_root, "usr/sbin/sesame-pki")
    result = subprocess.run([tool] + list(args), capture_output=True, text=True, timeout=120)
    check(result.returncode == 0, f"sesame-pki {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def check_handshake_refused(fleet, result, what):
    """A client the TLS handshake refused: no data, and an exit code that
    says it did not get through. The handshake's refusal reaches gRPC's
    client as a closed socket, so sesamectl cannot name it (see the top)."""
    check(result.returncode in (EXIT_UNREACHABLE, EXIT_REFUSED),
          f"{what}: exit {result.returncode} (stdout {result.stdout!r}, stderr {result.stderr.strip()!r})")
    check(not result.stdout.strip(), f"{what}: sesamectl printed data: {result.stdout!r}")
    log(f"{what}: exit {result.returncode}: {result.stderr.strip()}")


def start_agent_in(fleet, host, config, log_name):
    """A sesame-agent in host's namespace, in the foreground; its output goes
    to RUN_DIR/log_name (printed with the daemons' logs on failure)."""
    out = open(os.path.join(fleet.run_dir, log_name), "w")
    agent = os.path.join(fleet.hosts, "bastion1/usr/sbin/sesame-agent")
    argv = ["ip", "netns", "exec", fleet.netns(host), agent, "-c", config]
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT), out


def agent_config(fleet, name, cert_of, extra=""):
    """bastion1's agent.conf with its own StateDir, cert_of's certificate
    and key, and only the [options] section (no doors that would touch a
    file outside the bed's namespaces)."""
    with open(os.path.join(fleet.hosts, "bastion1/etc/sesame/agent.conf")) as f:
        text = f.read()
    state = os.path.join(fleet.run_dir, name, "state")
    os.makedirs(state, exist_ok=True)
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped != "[options]":
            break
        key = stripped.split("=")[0].strip()
        if key == "StateDir":
            line = f"  StateDir = {state}"
        elif key in ("Cert", "Key"):
            line = line.replace("/bastion1/", f"/{cert_of}/")
        lines.append(line)
        if stripped == "[options]" and extra:
            lines.append(extra)
    path = os.path.join(fleet.run_dir, name, "agent.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def other_ca(fleet):
    pki = os.path.join(fleet.run_dir, "other-ca")
    sesame_pki(fleet, "init", pki)
    sesame_pki(fleet, "operator", pki, "oncall")  # the same name as the real operator
    cert, key = os.path.join(pki, "operator/oncall.crt"), os.path.join(pki, "operator/oncall.key")
    result = fleet.sesamectl("agents", "list", cert=cert, key=key, check_ok=False)
    check_handshake_refused(fleet, result, "(a) an operator certificate of another CA")

    def audited():
        return [r for r in fleet.audit_where("tls.refused") if r["details"].get("stage") == "handshake"] or None

    records, took = wait_until(audited, 30, "(a) a tls.refused record of the handshake")
    details = records[0]["details"]
    check(details.get("reason") == "unknown CA", f"(a) the refusal's reason: {details}")
    check("spiffe://sesame/admin/oncall" == details.get("claimed"), f"(a) the refusal does not say who: {details}")
    check(details.get("serial"), f"(a) the refusal has no serial: {details}")
    log(f"(a) audited after {took:.2f} s: {details}")


def agent_as_operator(fleet):
    tls = os.path.join(fleet.hosts, "bastion1/etc/sesame/tls")
    cert, key = os.path.join(tls, "agent.crt"), os.path.join(tls, "agent.key")
    result = fleet.sesamectl("agents", "list", cert=cert, key=key, check_ok=False)
    check(result.returncode == EXIT_REFUSED, f"(b) agents list with bastion1's certificate: exit {result.returncode}")
    check("agent:bastion1" in result.stderr, f"(b) the refusal does not say who: {result.stderr.strip()}")
    log(f"(b) agents list as bastion1: exit {result.returncode}: {result.stderr.strip()}")
    c1 = fleet.address("c1")
    result = fleet.sesamectl("grants", "open", "--fleet", "--ip", c1, "--door", "fleetSSH",
                             cert=cert, key=key, check_ok=False)
    check(result.returncode == EXIT_REFUSED, f"(b) grants open with bastion1's certificate: exit {result.returncode}")
    check(not [g for g in fleet.grants() if g.get("address") == c1], "(b) an agent's certificate opened a grant")
    check(not fleet.can_connect("c1", "b1"), "(b) c1 reaches b1 after the refused grants open")

    def refusals():
        records = [r for r in fleet.audit_where("admin.refused") if r["who"] == "agent:bastion1"]
        return records if len(records) >= 2 else None

    refused, took = wait_until(refusals, 30, "(b) two admin.refused records of agent:bastion1")
    log(f"(b) refusals audited after {took:.2f} s: " +
        "; ".join(f"{r['who']} {r['details'].get('reason')} from {r['details'].get('peer')}" for r in refused))
    check(all(fleet.address("c1") in r["details"].get("peer", "") for r in refused),
          f"(b) the refusal records do not name c1's address: {refused}")


def impostor_session(fleet):
    """A second agent with bastion1's certificate, in c2's namespace."""
    c2 = fleet.address("c2")
    config = agent_config(fleet, "impostor", "bastion1")
    proc, out = start_agent_in(fleet, "c2", config, "impostor-agent.log")
    try:
        def replaced_by_c2():
            return [r for r in fleet.audit_where("agent.session_replaced")
                    if r["who"] == "agent:bastion1" and c2 in r["details"].get("peer", "")]

        records, took = wait_until(replaced_by_c2, 60, "(c) an agent.session_replaced record naming c2's session")
        log(f"(c) bastion1's session replaced by the one from {c2} after {took:.2f} s: {records[0]}")
        check(proc.poll() is None, f"(c) the second agent exited early ({proc.returncode})")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        out.close()
    # The two sessions took turns while both ran; each turn is on record.
    connects = [r for r in fleet.audit_where("agent.connected") if r["who"] == "agent:bastion1"]
    peers = {r["details"].get("peer", "") for r in connects}
    check(any(c2 in p for p in peers), f"(c) no agent.connected record of bastion1 from {c2}: {peers}")
    check(any(fleet.address("b1") in p for p in peers), f"(c) no agent.connected record from b1: {peers}")
    replaced = [r for r in fleet.audit_where("agent.session_replaced") if r["who"] == "agent:bastion1"]
    log(f"(c) while both ran: {len(connects)} connects of bastion1, {len(replaced)} replacements audited")

    # The real bastion1 takes its session back and still opens its door.
    def b1_is_back():
        agent = fleet.agents().get("bastion1", {})
        last = [r for r in fleet.audit_where("agent.connected") if r["who"] == "agent:bastion1"][-1]
        return agent.get("connected") and fleet.address("b1") in last["details"].get("peer", "")

    _, took = wait_until(b1_is_back, 60, "(c) bastion1 connected again from b1", interval=0.2)
    log(f"(c) bastion1 back from b1 after {took:.2f} s")
    [seq] = fleet.issue("openSSH")
    fleet.knock("c1", "b1", seq)
    try:
        fleet.wait_open("c1", "b1")
    except Failure:
        # What the controller knew: the last records, the agents, the grants.
        for r in fleet.audit()[-12:]:
            log(f"audit: {r['index']} {r['who']} {r['what']} {r['where']} {r.get('details')}")
        log(f"agents: {fleet.agents().get('bastion1')}")
        log(f"grants: {fleet.grants()}; sequences: {fleet.sesamectl_json('sequences', 'list')}")
        log(f"b1's nftables: {fleet.nft_grants('b1')}")
        raise


def wrong_certificate_for_name(fleet):
    """AgentName = bastion1 with bastion2's certificate: the agent refuses to
    start, before it dials anything."""
    config = agent_config(fleet, "misnamed", "bastion2", extra="  AgentName = bastion1")
    proc, out = start_agent_in(fleet, "c2", config, "misnamed-agent.log")
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        raise
    finally:
        out.close()
    with open(os.path.join(fleet.run_dir, "misnamed-agent.log")) as f:
        message = f.read().strip()
    check(code != 0, f"(c) the agent with bastion2's certificate as bastion1 started (exit 0): {message}")
    check('"bastion1"' in message and '"bastion2"' in message,
          f"(c) the agent's message does not name both names: {message}")
    log(f"(c) AgentName=bastion1 with bastion2's certificate: exit {code}: {message}")


def revoked_operator(fleet):
    pki = fleet.pki
    sesame_pki(fleet, "operator", pki, "mallory")
    cert, key = os.path.join(pki, "operator/mallory.crt"), os.path.join(pki, "operator/mallory.key")
    fleet.sesamectl("agents", "list", cert=cert, key=key)  # works before the revocation
    sesame_pki(fleet, "revoke", pki, "mallory", "--reason", "keyCompromise")
    # What the sesame_pki role does: the hashed CRL files into the
    # controller's CRL directory.
    crl_dir = os.path.join(fleet.controller_root, "etc/sesame/tls/crl.d")
    copied = glob.glob(os.path.join(pki, "crl.d/*"))
    check(copied, "(d) sesame-pki left no CRL in crl.d")
    for src in copied:
        shutil.copyfile(src, os.path.join(crl_dir, os.path.basename(src)) + ".new")
        os.replace(os.path.join(crl_dir, os.path.basename(src)) + ".new", os.path.join(crl_dir, os.path.basename(src)))
    # No restart: the controller reads the CRL again within a second.
    def refused():
        result = fleet.sesamectl("agents", "list", cert=cert, key=key, check_ok=False)
        return result if result.returncode == EXIT_REFUSED else None

    result, took = wait_until(refused, 30, "(d) the revoked operator refused without a restart")
    check(not result.stdout.strip(), f"(d) sesamectl printed data: {result.stdout!r}")
    log(f"(d) revoked operator refused {took:.2f} s after the CRL was copied: {result.stderr.strip()}")

    def audited():
        return [r for r in fleet.audit_where("tls.refused")
                if r["details"].get("reason") == "revoked" and "mallory" in r["details"].get("claimed", "")] or None

    records, _ = wait_until(audited, 30, "(d) a tls.refused record of the revoked operator")
    details = records[0]["details"]
    check(details.get("stage") == "call" and details.get("peer", "unknown") != "unknown",
          f"(d) the refusal does not say from where: {details}")
    log(f"(d) audited: {details}")
    fleet.sesamectl("agents", "list")  # oncall is not revoked


def scenario(fleet):
    audit_before = len(fleet.audit())
    other_ca(fleet)
    agent_as_operator(fleet)
    impostor_session(fleet)
    wrong_certificate_for_name(fleet)
    revoked_operator(fleet)
    # Still healthy: every bastion connected, the audit chain verifies.
    fleet.wait_connected(BASTIONS)
    verify = fleet.sesamectl("audit", "verify")
    log(f"audit verify: {verify.stdout.strip()}")
    kinds = {}
    for r in fleet.audit()[audit_before:]:
        kinds[r["what"]] = kinds.get(r["what"], 0) + 1
    log(f"audit records written meanwhile: {kinds}")
    log("audited: (b) admin.refused, (c) agent.session_replaced + agent.connected with peer; "
        "not audited: (a), (d) (refused in the TLS handshake), (c) misnamed agent (never dials)")


run_scenario(scenario)
