#!/usr/bin/env bash
# The Debian packages where users install them: a fresh Debian 12 root
# (debootstrap --variant=minbase, with Debian's openssh-server), booted with
# `systemd-nspawn -b` on a veth link, the packages installed with
# `apt-get install ./sesame-*.deb`. Then, with systemd in charge:
#   - both units start (Type=notify: `systemctl start` returns once READY=1);
#   - the agent runs as sesame-agent with exactly CAP_NET_ADMIN and
#     CAP_NET_RAW; knocked from outside the container it opens its nftables
#     door, and the container's real sshd answers on port 22, which it did
#     not before the knock;
#   - the controller serves sesamectl over mutual TLS (certificates from
#     sesame-pki inside the container);
#   - an agent that stops answering (SIGSTOP) is killed by the watchdog and
#     restarted by systemd;
#   - `systemctl stop` and `apt-get purge` leave no process, no unit, no
#     nftables table and no state of the agent (the controller's store stays,
#     as Debian's purge of it says).
#
#   bash tests/deploy/nspawn_package_test.sh BUILD_DIR
#
# The debootstrap root is made once per machine (debian_root.sh, cached in
# /var/cache/sesame-test); the container runs on it with --volatile=overlay
# (its writes go to a tmpfs). Everything else runs in private PID, mount and network namespaces
# (this script re-executes itself inside them): no process, mount, link or
# file of the test outlives it, even when it is killed.
set -uo pipefail
build=$(cd "${1:?usage: nspawn_package_test.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }

if [ -z "${SESAME_NSPAWN_INNER:-}" ]; then
  [ "$(id -u)" -eq 0 ] || skip "needs root"
  for tool in debootstrap systemd-nspawn unshare nsenter cpack knock nft ip; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
  done
  [ -x "$build/agent/sesame-agent" ] && [ -x "$build/controller/sesame-controller" ] ||
    skip "the daemons are not built"

  root=$(bash "$here/debian_root.sh") || { echo "FAIL no Debian root for the container"; exit 1; }
  exec unshare --pid --fork --kill-child --mount --net --mount-proc \
    env SESAME_NSPAWN_INNER=1 SESAME_NSPAWN_ROOT="$root" bash "$0" "$@"
fi

# --- inside our own namespaces -----------------------------------------------
root=$SESAME_NSPAWN_ROOT
mount --make-rprivate /
mount -t tmpfs tmpfs /tmp  # every file of the test, gone with the namespace
work=$(mktemp -d)
failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
finish() {
  [ "$failures" -eq 0 ] && { echo "all checks passed"; exit 0; }
  echo "$failures check(s) failed"
  exit 1
}

mkdir -p "$work/debs"
# As package_layout_test.sh makes them: cpack pointed at build/deploy, where
# the packages' install rules live (the daemons are built already).
(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/cpack" \
  -D "CPACK_INSTALL_CMAKE_PROJECTS=$build/deploy;sesame;ALL;/" >"$work/cpack.log" 2>&1) || {
  tail -n 30 "$work/cpack.log"
  fail "cpack"
  finish
}
cp "$work"/cpack/*.deb "$work/debs/"
ls "$work/debs"/sesame-agent_*.deb "$work/debs"/sesame-controller_*.deb >/dev/null 2>&1 || {
  fail "cpack made no sesame-agent and sesame-controller packages"
  finish
}

ip link set lo up
machine=sesame-nspawn-test
systemd-nspawn -q -D "$root" --volatile=overlay --boot --register=no --keep-unit --machine="$machine" \
  --network-veth --bind-ro="$work/debs:/debs" --console=passive >"$work/nspawn.log" 2>&1 &
nspawn=$!

# The container's init (systemd) is nspawn's child.
leader=""
for _ in $(seq 1 100); do
  leader=$(pgrep -P "$nspawn" | head -n 1)
  [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ] && break
  sleep 0.1
done
[ -n "$leader" ] || { cat "$work/nspawn.log"; fail "the container did not start"; finish; }
in_container() { nsenter -t "$leader" -m -u -i -n -p -C -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

state=""
for _ in $(seq 1 120); do
  state=$(in_container systemctl is-system-running 2>/dev/null)
  case "$state" in running | degraded) break ;; esac
  sleep 0.5
done
case "$state" in
  running | degraded) pass "the container booted under systemd ($state)" ;;
  *) fail "the container did not boot: $state"; cat "$work/nspawn.log"; finish ;;
esac

# The link: 198.18.30.1 here, 198.18.30.2 in the container.
host_if=$(ip -o link 2>/dev/null | awk -F': ' '/ve-/ {print $2}' | cut -d@ -f1 | head -n 1)
ip addr add 198.18.30.1/24 dev "$host_if" && ip link set "$host_if" up
in_container ip addr add 198.18.30.2/24 dev host0
in_container ip link set host0 up
bastion=198.18.30.2

banner() {  # the first bytes port 22 sends, within 3 s, or nothing
  timeout 3 bash -c "exec 3<>/dev/tcp/$bastion/22 && head -c 8 <&3" 2>/dev/null
}
case "$(banner)" in
  SSH-2.0*) pass "the container's sshd answers before the agent is installed" ;;
  *) fail "no sshd on $bastion:22 in the container" ;;
esac

# --- install -------------------------------------------------------------------
if in_container sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    /debs/sesame-agent_*.deb /debs/sesame-controller_*.deb' >"$work/apt.log" 2>&1; then
  pass "apt-get install ./sesame-agent_*.deb ./sesame-controller_*.deb"
else
  tail -n 30 "$work/apt.log"
  fail "apt-get install of the packages"
  finish
fi

# --- the agent -----------------------------------------------------------------
in_container sh -c 'cat >/etc/sesame/agent.conf' <<'CONF'
[options]
  Interface = host0
[openSSH]
  sequence    = 7000,8000,9000
  seq_timeout = 5
  tcpflags    = syn
  backend     = nftables
  ports       = 22:tcp
  cmd_timeout = 30
CONF
# systemctl enable --now UNIT: true once active (Type=notify: READY=1 came).
start_unit() {
  local unit=$1 why=$2
  if in_container systemctl enable --now "$unit" >"$work/$unit-start.log" 2>&1 &&
    [ "$(in_container systemctl is-active "$unit")" = active ]; then
    pass "systemctl enable --now $unit: active ($why)"
    return 0
  fi
  cat "$work/$unit-start.log"
  in_container journalctl -u "$unit" --no-pager | tail -n 20
  fail "$unit did not start"
  return 1
}
start_unit sesame-agent "READY=1 once it captures" || finish
main_pid() { in_container systemctl show -p MainPID --value "$1"; }
agent_pid=$(main_pid sesame-agent)
user=$(in_container ps -o user= -p "$agent_pid" | tr -d ' ')
[ "$user" = sesame-agent ] && pass "the agent runs as sesame-agent" || fail "the agent runs as '$user'"
# CAP_NET_ADMIN (12) and CAP_NET_RAW (13), nothing else, in every set that counts.
caps=$(in_container grep -E '^Cap(Eff|Prm|Bnd|Amb):' "/proc/$agent_pid/status" | awk '{print $2}' | sort -u | paste -sd' ' -)
[ "$caps" = 0000000000003000 ] && pass "its capabilities are exactly CAP_NET_ADMIN and CAP_NET_RAW" ||
  fail "its capabilities: $caps (expected 0000000000003000 in CapEff, CapPrm, CapBnd, CapAmb)"
status=$(in_container systemctl show -p StatusText --value sesame-agent)
[ "$status" = "capturing on host0, 1 door(s)" ] && pass "systemctl status says: $status" ||
  fail "the agent's status text: '$status'"

if [ -z "$(banner)" ]; then
  pass "port 22 is closed to us once the agent runs (its nftables door)"
else
  fail "port 22 answers before any knock"
fi
knock "$bastion" 7000 8000 9000
opened=""
for _ in $(seq 1 50); do
  opened=$(banner)
  [ -n "$opened" ] && break
  sleep 0.2
done
case "$opened" in
  SSH-2.0*) pass "knocked from outside: the door opened and sshd answers ($opened)" ;;
  *) fail "the knock did not open port 22"; in_container journalctl -u sesame-agent --no-pager | tail -n 20 ;;
esac

# --- the controller --------------------------------------------------------------
in_container sh -ec '
  sesame-pki init /root/pki >/dev/null
  sesame-pki controller /root/pki controller --dns localhost --ip 127.0.0.1 >/dev/null
  sesame-pki operator /root/pki oncall >/dev/null
  install -d -m 0755 /etc/sesame/tls
  install -m 0644 /root/pki/ca.crt /etc/sesame/tls/ca.crt
  install -m 0644 /root/pki/controller/controller.crt /etc/sesame/tls/controller.crt
  install -m 0640 -g sesame-controller /root/pki/controller/controller.key /etc/sesame/tls/controller.key
  cat >/etc/sesame/controller.conf <<CONF
[controller]
  Listen   = 127.0.0.1:7443
  StateDir = /var/lib/sesame-controller
[tls]
  CA_Cert = /etc/sesame/tls/ca.crt
  Cert    = /etc/sesame/tls/controller.crt
  Key     = /etc/sesame/tls/controller.key
[door openSSH]
  Sequence_Length = 3
  Port_Range      = 10000-60000
  Grant_Ports     = 22:tcp
CONF' >"$work/pki.log" 2>&1 || { cat "$work/pki.log"; fail "the controller's certificates and configuration"; }
start_unit sesame-controller "READY=1 once its store and port are up"
ctl() {
  in_container sesamectl --controller 127.0.0.1:7443 --ca-cert /root/pki/ca.crt \
    --cert /root/pki/operator/oncall.crt --key /root/pki/operator/oncall.key --timeout 20s "$@" 2>&1
}
health=$(ctl health)
[ "$health" = SERVING ] && pass "sesamectl health: SERVING" || fail "sesamectl health: $health"
doors=$(ctl -o json doors list)
case "$doors" in
  *openSSH*) pass "sesamectl doors list names openSSH" ;;
  *) fail "sesamectl doors list: $doors" ;;
esac

# --- a hung agent ------------------------------------------------------------------
# The unit's 30 s, shortened by a drop-in: the mechanism is what is tested.
in_container sh -c 'mkdir -p /etc/systemd/system/sesame-agent.service.d &&
  printf "[Service]\nWatchdogSec=3s\n" >/etc/systemd/system/sesame-agent.service.d/test-watchdog.conf &&
  systemctl daemon-reload && systemctl restart sesame-agent'
hung=$(main_pid sesame-agent)
in_container kill -STOP "$hung"
restarted=""
for _ in $(seq 1 150); do
  now=$(main_pid sesame-agent)
  if [ "$now" != "$hung" ] && [ "$now" != 0 ] && [ "$(in_container systemctl is-active sesame-agent)" = active ]; then
    restarted=$now
    break
  fi
  sleep 0.2
done
if [ -n "$restarted" ] && in_container journalctl -u sesame-agent --no-pager | grep -q "Watchdog timeout"; then
  pass "a stopped agent was killed by the watchdog and restarted (pid $hung -> $restarted)"
else
  fail "the hung agent was not restarted by the watchdog"
  in_container journalctl -u sesame-agent --no-pager | tail -n 20
fi

# --- stop and purge -----------------------------------------------------------------
in_container systemctl stop sesame-agent sesame-controller
if in_container sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y sesame-agent sesame-controller' \
  >"$work/purge.log" 2>&1; then
  pass "apt-get purge sesame-agent sesame-controller"
else
  tail -n 20 "$work/purge.log"
  fail "apt-get purge"
fi
left=$(in_container pgrep -a 'sesame-' 2>/dev/null)
[ -z "$left" ] && pass "no sesame process is left" || fail "left running: $left"
for path in /lib/systemd/system/sesame-agent.service /lib/systemd/system/sesame-controller.service \
  /usr/sbin/sesame-agent /usr/bin/sesamectl /etc/sesame/agent.conf /var/lib/sesame-agent; do
  if in_container test -e "$path"; then fail "purge left $path"; else pass "purge removed $path"; fi
done
if in_container nft list table inet sesame >/dev/null 2>&1; then
  fail "purge left the nftables table inet sesame"
else
  pass "purge removed the nftables table inet sesame"
fi
in_container test -d /var/lib/sesame-controller && pass "purge kept the controller's store (the audit log is evidence)" ||
  fail "purge removed the controller's store"

kill -TERM "$nspawn" 2>/dev/null  # an orderly poweroff of the container
for _ in $(seq 1 100); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.2; done
kill -KILL "$nspawn" 2>/dev/null
wait "$nspawn" 2>/dev/null
finish
