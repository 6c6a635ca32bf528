#!/usr/bin/env bash
# The agent does its job with exactly what sesame-agent.service gives it: an
# unprivileged user, the unit's ambient capabilities and bounding set (read
# from the unit file), no new privileges, a read-only /etc, /proc limited to
# processes (ProcSubset=pid) and only its state directory writable. In
# private network and mount namespaces, knocks on loopback must open doors
# through hosts_allow (include form), nftables and iptables, and burn a
# one-time sequence. Without the include line in hosts.allow the agent must
# refuse to start and say why.
#
#   bash tests/deploy/unit_sandbox_test.sh PATH/TO/sesame-agent UNIT_FILE
set -uo pipefail
agent=${1:?usage: unit_sandbox_test.sh SESAME_AGENT UNIT_FILE}
unit=${2:?usage: unit_sandbox_test.sh SESAME_AGENT UNIT_FILE}

if [ "$(id -u)" -ne 0 ]; then echo "SKIP: needs root for namespaces"; exit 0; fi
for tool in unshare setpriv ip nft iptables; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 0; }
done

# "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN" -> "+net_raw,+net_admin"
caps_of() {
  sed -n "s/^$1=//p" "$unit" | tr ' ' '\n' | sed '/^$/d' | tr 'A-Z' 'a-z' | sed 's/^cap_/+/' | paste -sd, -
}
ambient=$(caps_of AmbientCapabilities)
bounding=$(caps_of CapabilityBoundingSet)
[ -n "$ambient" ] && [ -n "$bounding" ] || { echo "FAIL: no capabilities found in $unit"; exit 1; }
echo "unit: ambient $ambient, bounding $bounding"

work=$(mktemp -d)
chmod 0755 "$work"
trap 'rm -rf "$work"' EXIT
nobody=65534
mkdir "$work/state"
chown "$nobody:$nobody" "$work/state"
echo " 4101,4202,4303" >"$work/state/one-time"
chown "$nobody:$nobody" "$work/state/one-time"
cat >"$work/agent.conf" <<CONF
[options]
  Interface = lo
  StateDir  = $work/state
[hostsAllowDoor]
  sequence    = 7000,8000,9000
  seq_timeout = 5
  backend     = hosts_allow
  cmd_timeout = 60
[nftablesDoor]
  sequence    = 7100,8100:udp,9100
  seq_timeout = 5
  backend     = nftables
  ports       = 2222:tcp
  cmd_timeout = 60
[iptablesDoor]
  sequence    = 7200,8200,9200
  seq_timeout = 5
  backend     = iptables
  ports       = 2223:tcp
  cmd_timeout = 60
[oneTimeDoor]
  one_time_sequences = $work/state/one-time
  seq_timeout = 5
  backend     = hosts_allow
  cmd_timeout = 60
CONF
printf 'sshd: %s/state/hosts.allow\n' "$work" >"$work/hosts.allow.with-line"
printf '# nothing of sesame here\n' >"$work/hosts.allow.without-line"

cat >"$work/inside.sh" <<'INSIDE'
set -u
work=$1 agent=$2 ambient=$3 bounding=$4 table=$5
ip link set lo up
# /proc with processes only (ProcSubset=pid, ProtectProc=invisible), /etc
# read-only (ProtectSystem=strict), then the hosts.allow under test.
mount -t proc -o subset=pid,hidepid=invisible proc /proc
mount --bind /etc /etc && mount -o remount,bind,ro /etc
mount --bind "$work/$table" /etc/hosts.allow && mount -o remount,bind,ro /etc/hosts.allow
touch /etc/sesame-sandbox-probe 2>/dev/null && { echo "FAIL /etc is writable in the sandbox"; exit 1; }
setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs \
  --inh-caps=-all,"$ambient" --ambient-caps=-all,"$ambient" --bounding-set=-all,"$bounding" \
  "$agent" -c "$work/agent.conf" >"$work/agent.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q "sesame-agent started" "$work/agent.log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if ! kill -0 "$pid" 2>/dev/null; then
  wait "$pid"
  echo "exited $?"
  exit 0
fi
echo "effective $(grep CapEff /proc/$pid/status | cut -f2) user $(stat -c %U /proc/$pid)"
knock() {  # TCP SYNs (refused connects) and UDP datagrams to loopback
  local port
  for port in "$@"; do
    case "$port" in
      *:udp) echo x >"/dev/udp/127.0.0.1/${port%:udp}" ;;
      *) timeout 2 bash -c "echo >/dev/tcp/127.0.0.1/$port" 2>/dev/null ;;
    esac
  done
}
knock 7000 8000 9000
knock 7100 8100:udp 9100
knock 7200 8200 9200
knock 4101 4202 4303
for _ in $(seq 100); do
  [ "$(grep -c '^.*opened .*: 127.0.0.1' "$work/agent.log")" -ge 4 ] && break
  sleep 0.1
done
echo "include file: $(tr '\n' ' ' <"$work/state/hosts.allow" 2>/dev/null)"
nft list table inet sesame 2>/dev/null | grep -q 'elements = { 127.0.0.1' && echo "nftables element present"
iptables -S SESAME 2>/dev/null | grep -q -- '-s 127.0.0.1/32 .*--dport 2223' && echo "iptables rule present"
grep -q '^#' "$work/state/one-time" && echo "one-time sequence burnt"
kill "$pid"
wait "$pid"
INSIDE

failures=0
expect() {
  if grep -qF -- "$2" "$work/out"; then echo "ok   $1"; else echo "FAIL $1 (expected: $2)"; failures=$((failures + 1)); fi
}

timeout 120 unshare -n -m --propagation private bash "$work/inside.sh" "$work" "$agent" "$ambient" "$bounding" \
  hosts.allow.with-line >"$work/out" 2>&1
cat "$work/out" | sed 's/^/     /'
expect "the agent starts as nobody" "user nobody"
expect "its effective capabilities are exactly CAP_NET_ADMIN and CAP_NET_RAW" "effective 0000000000003000"
expect "hosts_allow (include form) opens a door with a read-only /etc" "include file: 127.0.0.1"
expect "nftables opens a door" "nftables element present"
expect "iptables opens a door" "iptables rule present"
expect "a one-time sequence is burnt in the state directory" "one-time sequence burnt"
if [ $failures -gt 0 ]; then sed 's/^/     agent: /' "$work/agent.log"; fi

rm -rf "$work/state/hosts.allow" "$work/state/grants"
timeout 120 unshare -n -m --propagation private bash "$work/inside.sh" "$work" "$agent" "$ambient" "$bounding" \
  hosts.allow.without-line >"$work/out" 2>&1
expect "without the include line the agent refuses to start" "exited 1"
if grep -q "/etc/hosts.allow" "$work/agent.log"; then
  echo "ok   ... and names /etc/hosts.allow: $(tail -n1 "$work/agent.log")"
else
  echo "FAIL ... without naming /etc/hosts.allow: $(cat "$work/agent.log")"
  failures=$((failures + 1))
fi

echo
[ $failures -eq 0 ] || { echo "$failures check(s) failed"; exit 1; }
echo "all checks passed"
