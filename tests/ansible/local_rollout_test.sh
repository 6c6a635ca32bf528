#!/usr/bin/env bash
# The Ansible roles on a controller and three bastions without remote hosts:
# site.yml with a local connection into one root prefix per host
# (render_local_fleet.sh), then
#   - the certificates verify against the CA, carry each host's identity,
#     match their keys, and complete a mutual TLS handshake;
#   - each bastion's configuration passes `sesame-agent --check-config`
#     (skipped, with a message, until the agent binary is built); bastion2
#     is managed (Controller, CaCert/Cert/Key, ManagedBackend, a managed
#     door beside standalone ones);
#   - hosts.allow gained exactly its include line and nothing else changed;
#   - a second site.yml reports changed=0, and --check --diff no change;
#   - the lockout guard: bastion3 denies by default from the start (its
#     controller and doors answer); bastion1 is refused while the controller
#     does not answer, or while no door opens on a replay of its own
#     sequence (hosts.deny and the configuration untouched); bastion3's
#     deny is removed again exactly.
# The day-two playbooks are day_two_test.sh's.
#
#   local_rollout_test.sh BUILD_DIR
# Exit 77 (ctest: skipped) when Ansible is not installed.
set -euo pipefail

build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# bastion3 denies by default from the first rollout on (which needs the agent
# to replay its doors): its checks must pass, and stay quiet on later runs.
# bastion2 is managed: Controller, CaCert/Cert/Key (sesame_pki's files) and
# ManagedBackend in [options], its standalone doors beside a managed one.
cat >"$work/test-inventory.yml" <<EOF
all:
  hosts:
    bastion2:
      sesame_agent_managed: true
      sesame_agent_name: bastion2
      sesame_agent_managed_options: {ReserveSize: 3, Keepalive: 15s, AdvertiseHosts: [bastion2.example.net]}
      sesame_agent_doors:
        - {name: openSSH, sequence: "7000,8000,9000", seq_timeout: 5, tcpflags: "syn,!ack", backend: hosts_allow,
           cmd_timeout: 10}
        - name: oneTimeSSH
          one_time_sequences: "{{ sesame_agent_state_dir }}/one-time-ssh"
          one_time_sequences_seed: ["4101,4202:udp,4303", "5101,5202,5303:udp"]
          seq_timeout: 5
          tcpflags: "syn,!ack"
          backend: hosts_allow
          cmd_timeout: 10
        - {name: managedSSH, managed: true, backend: hosts_allow}
    bastion3:
      sesame_agent_default_deny: $([ $have_agent -eq 1 ] && echo true || echo false)
      sesame_agent_default_deny_except: ["10.0.0.0/255.0.0.0"]
EOF

# A bastion that already has TCP Wrappers rules: they must survive untouched.
mkdir -p "$base/bastion1/etc"
printf '# local rules, not sesame'"'"'s\nALL: 192.0.2.1\nsshd: 198.51.100.0/255.255.255.0\n' >"$base/bastion1/etc/hosts.allow"
printf '# local deny rules\nALL: 203.0.113.66\n' >"$base/bastion1/etc/hosts.deny"
chmod 0640 "$base/bastion1/etc/hosts.allow"
cp -p "$base/bastion1/etc/hosts.allow" "$work/hosts.allow.before"
cp -p "$base/bastion1/etc/hosts.deny" "$work/hosts.deny.before"
mkdir -p "$base/bastion2/etc" "$base/bastion3/etc"
cp -p "$work/hosts.deny.before" "$base/bastion3/etc/hosts.deny"
# One-file style with a catch-all deny: the include line must go before it.
printf 'sshd: 192.0.2.7\nALL: ALL : DENY\n' >"$base/bastion2/etc/hosts.allow"
# The include line is there already, spaced differently: leave it alone.
printf 'sshd :  %s/bastion3/var/lib/sesame-agent/hosts.allow \n' "$base" >"$base/bastion3/etc/hosts.allow"
cp -p "$base/bastion3/etc/hosts.allow" "$work/hosts.allow.bastion3"

step "first rollout"
expect_clean_run first
[ "$(recap changed first)" -gt 0 ] || fail "first: nothing changed on a fresh fleet"
grep -q '^controller1 ' "$work/first.log" && grep -q '^bastion3 ' "$work/first.log" || fail "first: not every host ran"

step "certificates and keys"
ctl=$base/controller1
ca=$ctl/etc/sesame/tls/ca.crt
[ -f "$ctl/var/lib/sesame-pki/private/ca.key" ] || fail "no CA on the controller"
for host in controller1 bastion1 bastion2 bastion3; do
  cmp -s "$ca" "$base/$host/etc/sesame/tls/ca.crt" || fail "$host: ca.crt differs from the CA's"
done
openssl verify -CAfile "$ca" "$ctl/etc/sesame/tls/controller.crt" >/dev/null || fail "controller.crt does not verify"
same_key "$ctl/etc/sesame/tls/controller.crt" "$ctl/etc/sesame/tls/controller.key" || fail "controller key does not match"
sans "$ctl/etc/sesame/tls/controller.crt" | grep -q 'IP Address:127.0.0.1' || fail "controller.crt lacks its address"
sans "$ctl/etc/sesame/tls/controller.crt" | grep -q 'URI:spiffe://sesame/controller/controller1' || fail "controller.crt: wrong identity"
openssl x509 -in "$ctl/etc/sesame/tls/operator.crt" -noout -subject | grep -q 'OU *= *admin' || fail "operator.crt lacks the admin role"
[ "$(mode "$ctl/etc/sesame/tls/controller.key")" = 640 ] || fail "controller.key mode $(mode "$ctl/etc/sesame/tls/controller.key")"
[ "$(mode "$ctl/etc/sesame/tls/operator.key")" = 600 ] || fail "operator.key mode"
[ "$(mode "$ctl/var/lib/sesame-controller/audit.key")" = 600 ] || fail "audit.key mode"
[ "$(mode "$ctl/var/lib/sesame-controller")" = 700 ] || fail "controller state directory mode"
[ "$(mode "$ctl/var/lib")" = 755 ] || fail "/var/lib under the prefix is $(mode "$ctl/var/lib")"
ls "$ctl/etc/sesame/tls/crl.d/"*.r0 >/dev/null || fail "no CRL directory on the controller"
for n in 1 2 3; do
  tls=$base/bastion$n/etc/sesame/tls
  openssl verify -CAfile "$ca" "$tls/agent.crt" >/dev/null || fail "bastion$n: agent.crt does not verify"
  same_key "$tls/agent.crt" "$tls/agent.key" || fail "bastion$n: key does not match"
  sans "$tls/agent.crt" | grep -q "URI:spiffe://sesame/agent/bastion$n\$" || fail "bastion$n: wrong identity"
  [ "$(mode "$tls/agent.key")" = 640 ] || fail "bastion$n: agent.key mode"
  [ ! -e "$tls/controller.key" ] && [ ! -e "$tls/operator.key" ] || fail "bastion$n received another host's key"
done

# Mutual TLS with exactly the rendered files: the controller's certificate
# as a server, bastion2's as a client.
tls_port=$(free_port)
timeout 20 openssl s_server -quiet -accept "127.0.0.1:$tls_port" -naccept 1 -Verify 1 -verify_return_error \
  -CAfile "$ca" -cert "$ctl/etc/sesame/tls/controller.crt" -key "$ctl/etc/sesame/tls/controller.key" \
  >"$work/s_server.log" 2>&1 &
server_pid=$!
handshake=1
for _ in $(seq 1 50); do
  if echo ping | timeout 10 openssl s_client -connect "127.0.0.1:$tls_port" -verify_return_error -verify_ip 127.0.0.1 \
    -CAfile "$ca" -cert "$base/bastion2/etc/sesame/tls/agent.crt" -key "$base/bastion2/etc/sesame/tls/agent.key" \
    >"$work/s_client.log" 2>&1; then
    handshake=0
    break
  fi
  sleep 0.2
done
wait "$server_pid" || true
[ $handshake -eq 0 ] && grep -q 'Verify return code: 0' "$work/s_client.log" ||
  { cat "$work/s_client.log" "$work/s_server.log" >&2; fail "mutual TLS with the rendered certificates failed"; }

step "configurations"
for n in 1 2 3; do
  conf=$base/bastion$n/etc/sesame/agent.conf
  grep -q "^  StateDir  = $base/bastion$n/var/lib/sesame-agent\$" "$conf" || fail "bastion$n: StateDir is not under its prefix"
  grep -q '^\[openSSH\]$' "$conf" || fail "bastion$n: no [openSSH] door"
  grep -q '^ 4101,4202:udp,4303$' "$base/bastion$n/var/lib/sesame-agent/one-time-ssh" || fail "bastion$n: one-time file not seeded"
  if [ $have_agent -eq 1 ]; then
    "$agent" --check-config "$conf" || fail "bastion$n: sesame-agent --check-config refuses $conf"
  fi
done
# bastion2 is managed (the keys of deploy/examples/agent-managed.conf, with
# the certificates sesame_pki installed); the others are standalone.
conf=$base/bastion2/etc/sesame/agent.conf
tls=$base/bastion2/etc/sesame/tls
for line in "Controller = 127.0.0.1:$port" "CaCert = $tls/ca.crt" "Cert   = $tls/agent.crt" "Key    = $tls/agent.key" \
  "AgentName = bastion2" "ManagedBackend = hosts_allow" "ReserveSize = 3" "Keepalive = 15s" \
  "AdvertiseHosts = bastion2.example.net"; do
  grep -qxF "  $line" "$conf" || { cat "$conf" >&2; fail "bastion2: no '$line' in its managed configuration"; }
done
[ "$(sed -n '/^\[managedSSH\]$/,/^$/p' "$conf")" = "[managedSSH]
  managed = True
  backend = hosts_allow
  # Under a root prefix: its own table, never this machine's /etc/hosts.allow.
  HostsAllow_Table = $base/bastion2/etc/hosts.allow" ] || { cat "$conf" >&2; fail "bastion2: wrong [managedSSH] section"; }
# No door of a rendered bastion may touch this machine's /etc/hosts.allow.
for n in 1 2 3; do
  c=$base/bastion$n/etc/sesame/agent.conf
  doors=$(grep -ci '^ *backend *= *hosts_allow' "$c" || true)
  tables=$(grep -c "^  HostsAllow_Table = $base/bastion$n/etc/hosts.allow\$" "$c" || true)
  [ "$doors" = "$tables" ] || { cat "$c" >&2; fail "bastion$n: a hosts_allow door without its prefix's table"; }
done
if grep -qi '^\[controller\]\|^ *controller *=' "$base/bastion1/etc/sesame/agent.conf"; then
  fail "bastion1 is standalone but its configuration names a controller"
fi
if [ $have_agent -eq 1 ]; then
  "$agent" --check-config "$conf" >"$work/check-managed.log" 2>&1 ||
    { cat "$work/check-managed.log" >&2; fail "bastion2: sesame-agent --check-config refuses its managed configuration"; }
fi
# --check-config does not open the certificates: the paths it names must be
# sesame_pki's installed files, and they must fit together.
cert=$(sed -n 's/^  Cert *= *//p' "$conf")
key=$(sed -n 's/^  Key *= *//p' "$conf")
openssl verify -CAfile "$(sed -n 's/^  CaCert *= *//p' "$conf")" "$cert" >/dev/null &&
  same_key "$cert" "$key" || fail "bastion2: CaCert, Cert and Key of its configuration do not fit together"
if [ $have_agent -eq 1 ]; then
  # Usable, not only valid: a knock of each door, replayed through the agent
  # with bastion1's configuration, opens it.
  python3 "$here/../../ansible/roles/sesame_agent/files/door_check.py" "$agent" "$base/bastion1/etc/sesame/agent.conf" \
    '[{"name": "openSSH", "sequence": "7000,8000,9000"}, {"name": "oneTimeSSH",
      "one_time_sequences": "'"$base"'/bastion1/var/lib/sesame-agent/one-time-ssh"}]' >"$work/doors.json" ||
    fail "bastion1: sesame-agent --pcap failed"
  grep -q '"answered": \["openSSH", "oneTimeSSH"\]' "$work/doors.json" || { cat "$work/doors.json" >&2; fail "bastion1: a door did not open"; }
else
  echo "SKIP: sesame-agent --check-config and --pcap with the rendered configurations (agent not built)"
fi
grep -q "^  Listen   = \[::\]:$port\$" "$ctl/etc/sesame/controller.conf" || fail "controller.conf: wrong Listen"

step "hosts.allow: one include line, nothing else touched"
allow=$base/bastion1/etc/hosts.allow
include="sshd: $base/bastion1/var/lib/sesame-agent/hosts.allow"
head -c "$(stat -c %s "$work/hosts.allow.before")" "$allow" | cmp -s - "$work/hosts.allow.before" ||
  fail "hosts.allow: the existing lines changed"
[ "$(tail -n +4 "$allow")" = "$include" ] || { cat "$allow" >&2; fail "hosts.allow: expected exactly one more line"; }
[ "$(mode "$allow")" = 640 ] || fail "hosts.allow: mode changed to $(mode "$allow")"
cmp -s "$base/bastion1/etc/hosts.deny" "$work/hosts.deny.before" || fail "hosts.deny changed without default deny"
[ "$(cat "$base/bastion2/etc/hosts.allow")" = "sshd: 192.0.2.7
sshd: $base/bastion2/var/lib/sesame-agent/hosts.allow
ALL: ALL : DENY" ] || { cat "$base/bastion2/etc/hosts.allow" >&2; fail "bastion2: the include line is not before the catch-all deny"; }
cmp -s "$base/bastion3/etc/hosts.allow" "$work/hosts.allow.bastion3" || fail "bastion3: an equivalent include line was not recognised"

if [ $have_agent -eq 1 ]; then
  step "default deny on bastion3: one block in hosts.deny, the rest untouched"
  deny=$base/bastion3/etc/hosts.deny
  head -c "$(stat -c %s "$work/hosts.deny.before")" "$deny" | cmp -s - "$work/hosts.deny.before" ||
    fail "bastion3: the existing hosts.deny lines changed"
  grep -qx 'sshd: ALL EXCEPT 10.0.0.0/255.0.0.0' "$deny" || { cat "$deny" >&2; fail "bastion3: no deny line"; }
  [ "$(grep -c '^sshd:' "$deny")" -eq 1 ] || fail "bastion3: more than one deny line"
  grep -q 'Doors that answer on bastion3: openSSH, oneTimeSSH' "$work/first.log" || fail "bastion3: its doors were not replayed"
else
  echo "SKIP: default deny on bastion3 (needs the agent binary to replay the doors)"
fi

step "second rollout: nothing to change"
expect_no_change second

step "--check --diff: nothing to change"
expect_no_change check --check --diff

step "default deny refused while the controller does not answer"
if run deny_refused --limit bastion1 -e sesame_agent_default_deny=true -e sesame_controller_port="$closed_port" \
  -e sesame_agent_preflight_timeout=2; then
  fail "default deny was enabled with no controller listening"
fi
grep -q 'Refusing to enable default deny on bastion1: the controller at 127.0.0.1:'"$closed_port"' did not answer' \
  "$work/deny_refused.log" || { show_log deny_refused; fail "deny_refused: no refusal message"; }
cmp -s "$base/bastion1/etc/hosts.deny" "$work/hosts.deny.before" || fail "deny_refused: hosts.deny changed"

if [ $have_agent -eq 1 ]; then
  step "default deny refused while no door answers"
  if run deny_silent --limit bastion1 -e sesame_agent_default_deny=true \
    -e '{"sesame_agent_doors": [{"name": "spentDoor", "backend": "hosts_allow",
         "one_time_sequences": "{{ sesame_agent_state_dir }}/spent", "one_time_sequences_seed": ["#7001,7002,7003"]}]}'; then
    fail "default deny was enabled with a door that cannot open"
  fi
  grep -q 'no door answers a replay of its own sequence' "$work/deny_silent.log" ||
    { show_log deny_silent; fail "deny_silent: no refusal message"; }
  cmp -s "$base/bastion1/etc/hosts.deny" "$work/hosts.deny.before" || fail "deny_silent: hosts.deny changed"
  grep -q '^\[openSSH\]$' "$base/bastion1/etc/sesame/agent.conf" || fail "deny_silent: the refused configuration was installed"
  rm -f "$base/bastion1/var/lib/sesame-agent/spent"

  step "default deny off again on bastion3: hosts.deny as it was"
  expect_clean_run deny_off --limit bastion3 -e sesame_agent_default_deny=false
  cmp -s "$base/bastion3/etc/hosts.deny" "$work/hosts.deny.before" ||
    { diff "$work/hosts.deny.before" "$base/bastion3/etc/hosts.deny" >&2; fail "deny_off: hosts.deny not restored"; }
else
  step "default deny refused while the configuration cannot be checked"
  if run deny_unchecked --limit bastion1 -e sesame_agent_default_deny=true; then
    fail "default deny was enabled without checking the configuration"
  fi
  grep -q 'Refusing to enable default deny on bastion1' "$work/deny_unchecked.log" || fail "deny_unchecked: no refusal"
  cmp -s "$base/bastion1/etc/hosts.deny" "$work/hosts.deny.before" || fail "deny_unchecked: hosts.deny changed"
fi

echo "PASS: local rollout of controller1 and bastion1-3 in $(($(date +%s) - started)) s"
