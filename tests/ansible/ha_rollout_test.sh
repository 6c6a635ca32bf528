#!/usr/bin/env bash
# The Ansible roles for controllers in high availability, rendered on this
# machine (local connection, one root prefix per host): three controllers,
# three etcd members (roles/sesame_etcd) and three managed bastions, then
#   - each member's /etc/default/etcd names the whole cluster, mutual TLS
#     for clients and peers with etcd's own CA, its data directory 0700;
#     the unit's hardening drop-in is there, and systemd-analyze takes it
#     over Debian's etcd.service without a complaint;
#   - etcd's CA is not the fleet's; each member's certificate carries its
#     address, each controller has an etcd client certificate, no bastion
#     has any etcd file;
#   - each controller: Store = etcd with every member, its own name and
#     certificate address, the one audit key of the fleet, a sesamectl.env
#     listing every controller (its own first); its configuration passed
#     `sesame-controller --check-config` (the role's validate);
#   - bastion N lists the three controllers starting with controller N;
#   - a second run changes nothing.
# The HA fleet bed (tests/fleet, bed.sh --ha) starts etcd and the
# controllers from exactly these roles.
#
#   ha_rollout_test.sh BUILD_DIR
# Exit 77 (ctest: skipped) when Ansible is not installed.
set -euo pipefail

build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

cat >"$work/test-inventory.yml" <<'INVENTORY'
all:
  children:
    controller:
      hosts:
        controller1: {ansible_host: 127.0.0.11}
        controller2: {ansible_host: 127.0.0.12}
        controller3: {ansible_host: 127.0.0.13}
    etcd:
      hosts:
        etcd1: {ansible_host: 127.0.0.31}
        etcd2: {ansible_host: 127.0.0.32}
        etcd3: {ansible_host: 127.0.0.33}
    bastions:
      vars:
        sesame_agent_managed: true
INVENTORY

step "first rollout"
expect_clean_run first
for host in controller1 controller2 controller3 etcd1 etcd2 etcd3 bastion1 bastion2 bastion3; do
  grep -q "^$host " "$work/first.log" || fail "first: $host did not run"
done

step "etcd members"
cluster="etcd1=https://127.0.0.31:2380,etcd2=https://127.0.0.32:2380,etcd3=https://127.0.0.33:2380"
etcd_ca=$base/controller1/var/lib/sesame-pki-etcd/ca.crt
fleet_ca=$base/controller1/etc/sesame/tls/ca.crt
cmp -s "$etcd_ca" "$fleet_ca" && fail "etcd's CA is the fleet's CA"
for n in 1 2 3; do
  root=$base/etcd$n
  env=$root/etc/default/etcd
  tls=$root/etc/sesame/etcd
  for line in "ETCD_NAME=etcd$n" "ETCD_DATA_DIR=$root/var/lib/etcd/sesame" \
    "ETCD_LISTEN_CLIENT_URLS=https://127.0.0.3$n:2379" "ETCD_INITIAL_ADVERTISE_PEER_URLS=https://127.0.0.3$n:2380" \
    "ETCD_INITIAL_CLUSTER=$cluster" "ETCD_CLIENT_CERT_AUTH=true" "ETCD_PEER_CLIENT_CERT_AUTH=true" \
    "ETCD_TRUSTED_CA_FILE=$tls/ca.crt" "ETCD_PEER_TRUSTED_CA_FILE=$tls/ca.crt" \
    "ETCD_CERT_FILE=$tls/member.crt" "ETCD_PEER_KEY_FILE=$tls/member.key"; do
    grep -qxF "$line" "$env" || { cat "$env" >&2; fail "etcd$n: no '$line'"; }
  done
  # Shell and systemd read it alike: nothing but KEY=value lines.
  grep -v '^#' "$env" | grep -v '^ETCD_[A-Z_]*=[^ ]*$' && fail "etcd$n: a line that is not KEY=value"
  [ "$(mode "$root/var/lib/etcd/sesame")" = 700 ] || fail "etcd$n: data directory mode"
  grep -qx 'ProtectSystem=strict' "$root/etc/systemd/system/etcd.service.d/sesame-hardening.conf" ||
    fail "etcd$n: no hardening drop-in"
  cmp -s "$tls/ca.crt" "$etcd_ca" || fail "etcd$n: ca.crt is not etcd's CA"
  openssl verify -CAfile "$etcd_ca" "$tls/member.crt" >/dev/null || fail "etcd$n: member.crt does not verify"
  same_key "$tls/member.crt" "$tls/member.key" || fail "etcd$n: member key does not match"
  sans "$tls/member.crt" | grep -q "IP Address:127.0.0.3$n" || fail "etcd$n: member.crt lacks its address"
  [ "$(mode "$tls/member.key")" = 640 ] || fail "etcd$n: member.key mode"
  [ ! -e "$root/etc/sesame/tls/controller.key" ] || fail "etcd$n received a controller key"
done

# The drop-in over Debian's own unit, as systemd reads it (systemd-analyze
# names every directive it cannot parse; nothing may be named).
if [ -f /lib/systemd/system/etcd.service ] && command -v systemd-analyze >/dev/null; then
  units=$work/units
  mkdir -p "$units/etcd.service.d"
  cp /lib/systemd/system/etcd.service "$units/"
  cp "$base/etcd1/etc/systemd/system/etcd.service.d/sesame-hardening.conf" "$units/etcd.service.d/"
  SYSTEMD_UNIT_PATH=$units: systemd-analyze verify "$units/etcd.service" >"$work/verify.log" 2>&1 || true
  if grep -q sesame-hardening "$work/verify.log"; then
    cat "$work/verify.log" >&2
    fail "systemd does not take the hardening drop-in as written"
  fi
else
  echo "SKIP: the drop-in over Debian's etcd.service (etcd-server or systemd-analyze missing)"
fi

step "controllers on etcd"
endpoints="https://127.0.0.31:2379, https://127.0.0.32:2379, https://127.0.0.33:2379"
for n in 1 2 3; do
  root=$base/controller$n
  conf=$root/etc/sesame/controller.conf
  tls=$root/etc/sesame/etcd
  for line in "Name           = controller$n" "Store          = etcd" "Etcd_Endpoints = $endpoints" \
    "Etcd_CaCert    = $tls/ca.crt" "Etcd_Cert      = $tls/controller.crt" "Etcd_Key       = $tls/controller.key"; do
    grep -qxF "  $line" "$conf" || { cat "$conf" >&2; fail "controller$n: no '$line'"; }
  done
  openssl verify -CAfile "$etcd_ca" "$tls/controller.crt" >/dev/null || fail "controller$n: etcd client certificate"
  openssl x509 -in "$tls/controller.crt" -noout -ext extendedKeyUsage | grep -q 'Client Authentication' ||
    fail "controller$n: etcd certificate is not a client one"
  if openssl verify -CAfile "$fleet_ca" "$tls/controller.crt" >/dev/null 2>&1; then
    fail "controller$n: its etcd certificate verifies against the fleet's CA"
  fi
  sans "$root/etc/sesame/tls/controller.crt" | grep -q "IP Address:127.0.0.1$n" ||
    fail "controller$n: controller.crt lacks its own address"
  cmp -s "$root/var/lib/sesame-controller/audit.key" "$base/controller1/var/lib/sesame-controller/audit.key" ||
    fail "controller$n: not the fleet's one audit key"
  others=$(for m in 1 2 3; do [ $m = "$n" ] || printf ',127.0.0.1%s:%s' "$m" "$port"; done)
  grep -qx "export SESAME_CONTROLLER=127.0.0.1$n:$port$others" "$root/etc/sesame/sesamectl.env" ||
    { cat "$root/etc/sesame/sesamectl.env" >&2; fail "controller$n: sesamectl.env does not list every controller"; }
done

step "bastions list every controller, each starting on its own"
for n in 1 2 3; do
  conf=$base/bastion$n/etc/sesame/agent.conf
  list=$(for m in $(seq "$n" 3) $(seq 1 $((n - 1))); do printf '127.0.0.1%s:%s, ' "$m" "$port"; done)
  grep -qxF "  Controller = ${list%, }" "$conf" || { grep Controller "$conf" >&2; fail "bastion$n: wrong controller list"; }
  [ ! -e "$base/bastion$n/etc/sesame/etcd" ] || fail "bastion$n received etcd files"
done

step "second rollout: nothing to change"
expect_no_change second

echo "PASS: HA rollout of controller1-3, etcd1-3 and bastion1-3 in $(($(date +%s) - started)) s"
