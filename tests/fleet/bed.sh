#!/usr/bin/env bash
# The fleet test bed: a controller, three bastions and two clients, each in
# its own network namespace, on a bridge in a sixth ("sw"). Configurations
# and certificates come from the Ansible roles (tests/ansible/
# render_local_fleet.sh with tests/fleet/fleet-vars.yml); the daemons run
# from what the roles rendered. Used by the scenario tests and by
# deploy/demo.sh.
#
#   bed.sh up   RUN_DIR PREFIX [--host-link] [--ha]
#                                      render, wire, start, wait
#   bed.sh start RUN_DIR controller|controller2|controller3|e1|e2|e3|b1|b2|b3
#                                      start a daemon again (after a test
#                                      killed it)
#   bed.sh down RUN_DIR                stop and remove everything
#   bed.sh render DIR                  render the fleet once into DIR/hosts;
#                                      `up` copies it when SESAME_FLEET_RENDERED=DIR
#
# --ha: the high-availability bed. Three etcd members (e1-e3, 198.18.20.31-
# 33) and three controllers (ctl, ctl2, ctl3: .10, .14, .15), rendered by
# the same roles with tests/fleet/ha-inventory.yml added: the sesame_etcd
# role's /etc/default/etcd for each member (mutual TLS, etcd's own CA),
# Store = etcd on each controller, every agent listing the three
# controllers with bastion N starting on controller N.
#
# PREFIX starts every namespace name (PREFIXctl, PREFIXb1 ...), so beds of
# concurrent tests never meet. --host-link puts this machine on the bridge
# too (198.18.20.1, fd5e:20::1), so sesamectl and knock work from a plain
# shell; tests leave it out and stay inside the namespaces.
# BUILD_DIR (default: build/ of this tree) holds the binaries.
#
# After `up`, RUN_DIR holds: hosts/ (one root prefix per host, as Ansible
# left it), env (SESAME_* exports of the operator "oncall"), fleet.json,
# bed.env (for scripts: PREFIX, addresses, paths), *.log of every daemon.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

net4=198.18.20 net6=fd5e:20:
declare -A host_octet=([host]=1 [ctl]=10 [b1]=11 [b2]=12 [b3]=13 [ctl2]=14 [ctl3]=15 [c1]=21 [c2]=22
  [e1]=31 [e2]=32 [e3]=33)
bastions=(b1 b2 b3)
clients=(c1 c2)
controllers=(ctl)  # --ha: ctl ctl2 ctl3
members=()         # --ha: e1 e2 e3
etcd_client_port=2379
ssh_port=22
console_ssh_port=2222  # the bastions' sshd judged by TCP Wrappers (consoleSSH)
command_ssh_port=2200  # the bastions' sshd behind the iptables command door (iptablesSSH)
controller_port=7443

usage() {
  echo "usage: $0 up RUN_DIR PREFIX [--host-link] [--ha] | start RUN_DIR DAEMON | down RUN_DIR | render DIR" >&2
  exit 2
}

say() { echo "bed: $*" >&2; }

# Everything `up` created is written down before it is created, so `down`
# removes exactly that, whichever step failed.
record() { echo "$1 $2" >>"$run/created"; }

down() {
  [ -f "$run/created" ] || return 0
  # Daemons first (they hold the namespaces' interfaces), then namespaces
  # and the host's link; in the reverse order of creation.
  tac "$run/created" | while read -r kind what; do
    case $kind in
      pidfile)
        [ -s "$what" ] || continue
        pid=$(cat "$what")
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        ;;
      netns)
        # What still runs there (an sshd session a test left) goes with it.
        ip netns pids "$what" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$what" 2>/dev/null || true
        ;;
      link) ip link del "$what" 2>/dev/null || true ;;
    esac
  done
  rm -f "$run/created"
}

in_ns() {
  local ns=$1
  shift
  ip netns exec "$prefix$ns" "$@"
}

wire() {
  local sw=${prefix}sw
  record netns "$sw"
  ip netns add "$sw"
  ip -n "$sw" link set lo up
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  for h in "${controllers[@]}" ${members[@]+"${members[@]}"} "${bastions[@]}" "${clients[@]}"; do
    record netns "$prefix$h"
    ip netns add "$prefix$h"
    ip -n "$sw" link add "$h" type veth peer name eth0 netns "$prefix$h"
    ip -n "$sw" link set "$h" master br0 up
    ip -n "$prefix$h" link set lo up
    ip -n "$prefix$h" addr add "$net4.${host_octet[$h]}/24" dev eth0
    ip -n "$prefix$h" addr add "$net6:${host_octet[$h]}/64" dev eth0 nodad
    ip -n "$prefix$h" link set eth0 up
  done
  if [ "$host_link" = 1 ]; then
    record link sesame-fleet
    ip link add sesame-fleet type veth peer name host netns "$sw"
    ip -n "$sw" link set host master br0 up
    ip addr add "$net4.${host_octet[host]}/24" dev sesame-fleet
    ip addr add "$net6:${host_octet[host]}/64" dev sesame-fleet nodad
    ip link set sesame-fleet up
  fi
}

# Each bastion's own policy: nothing reaches it unless sesame's table (or
# the iptables door's rule) marked the packet granted, but port 2222, where
# TCP Wrappers judge. Behind it, Debian's OpenSSH (its sshd links libwrap):
# on port 22 for the nftables doors and on 2200 for the iptables command
# door (TCP Wrappers let everyone through: the firewall judged; port 22 is
# also the default-deny port of sesame's own table, which an iptables rule
# cannot open), on port 2222 for the hosts_allow door (consoleSSH), reading
# the bastion's own hosts.allow and hosts.deny as Ansible rendered them (the
# agent's include file, the default-deny block).
guard_bastion() {
  local b=$1 etc=$run/hosts/bastion${1#b}/etc
  in_ns "$b" nft -f - <<NFT
table inet host {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iif lo accept
    meta l4proto { icmp, ipv6-icmp } accept
    meta mark & 0x5e5a0000 == 0x5e5a0000 accept
    tcp dport $console_ssh_port accept
  }
}
NFT
  start_sshd "$b" sshd "$ssh_port" "$run/ssh/allow-all" "$run/ssh/deny-none"
  start_sshd "$b" command-sshd "$command_ssh_port" "$run/ssh/allow-all" "$run/ssh/deny-none"
  start_sshd "$b" console-sshd "$console_ssh_port" "$etc/hosts.allow" "$etc/hosts.deny"
}

# sshd -D in bastion B's namespace and a private mount namespace of its own,
# where HOSTS_ALLOW and HOSTS_DENY are /etc/hosts.allow and /etc/hosts.deny
# (the host's are never touched), with its own host key; root logs in with
# the bed's client key ($run/ssh/client_key).
start_sshd() {
  local b=$1 name=$2 port=$3 allow=$4 deny=$5 dir=$run/$1-$2
  mkdir -p "$dir"
  ssh-keygen -q -t ed25519 -N '' -C "$b" -f "$dir/host_key"
  cat >"$dir/sshd_config" <<CONF
Port $port
ListenAddress 0.0.0.0
ListenAddress ::
HostKey $dir/host_key
PidFile none
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile $run/ssh/authorized_keys
StrictModes no
LoginGraceTime 20
MaxStartups 200
LogLevel VERBOSE
CONF
  # sshd's empty privilege separation directory, as Debian's ssh.service
  # makes it (RuntimeDirectory=sshd) on a host whose own sshd is not running.
  [ -d /run/sshd ] || mkdir -m 0755 /run/sshd
  record pidfile "$dir/pid"
  # exec all the way (ip netns exec, unshare, sh): $! is sshd itself.
  (exec ip netns exec "$prefix$b" unshare --mount sh -c '
    mount --bind "$1" /etc/hosts.allow && mount --bind "$2" /etc/hosts.deny &&
    exec /usr/sbin/sshd -D -e -f "$3"' sh "$allow" "$deny" "$dir/sshd_config" >"$dir/log" 2>&1) &
  echo $! >"$dir/pid"
}

# Renders the fleet with Ansible into DIR/hosts; DIR/complete marks a
# render that finished.
render_into() {
  local dir=$1 inventory=()
  [ $ha = 0 ] || inventory=(-i "$here/ha-inventory.yml")
  say "rendering the fleet with Ansible into $dir/hosts (log: $dir/render.log)"
  rm -rf "$dir/hosts" "$dir/complete"
  if ! SESAME_CONTROLLER_ADDRESS=$net4.${host_octet[ctl]} SESAME_CONTROLLER_PORT=$controller_port \
      bash "$repo/tests/ansible/render_local_fleet.sh" "$dir/hosts" "$build" -e "@$here/fleet-vars.yml" \
      "${inventory[@]}" >"$dir/render.log" 2>&1; then
    tail -n 30 "$dir/render.log" >&2
    say "the Ansible run failed"
    return 1
  fi
  touch "$dir/complete"
}

# The bed's hosts/: rendered here, or copied from SESAME_FLEET_RENDERED (a
# `bed.sh render` of the single-controller bed made once for a whole test
# run: Ansible takes half a minute of both cores, the copy a second).
# Binaries under usr/ are hard links (nothing writes them in place); the few
# files where the roles wrote the render's absolute path get this bed's.
render() {
  local from=${SESAME_FLEET_RENDERED:-}
  if [ -z "$from" ] || [ $ha = 1 ]; then
    render_into "$run"
    return
  fi
  if [ ! -f "$from/complete" ]; then
    say "SESAME_FLEET_RENDERED=$from holds no finished render (run: bed.sh render $from)"
    return 1
  fi
  from=$(cd "$from" && pwd)
  say "copying the fleet rendered in $from/hosts"
  local host part
  mkdir -p "$run/hosts"
  for host in "$from"/hosts/*/; do
    host=$(basename "$host")
    mkdir -p "$run/hosts/$host"
    for part in "$from/hosts/$host"/*; do
      if [ "$(basename "$part")" = usr ]; then
        cp -al "$part" "$run/hosts/$host/"
      else
        cp -a "$part" "$run/hosts/$host/"
      fi
    done
  done
  grep -rlIF --exclude-dir=usr "$from/hosts" "$run/hosts" | while read -r file; do
    sed -i "s#$from/hosts#$run/hosts#g" "$file"
  done
}

# sesamectl as the operator "oncall", from inside the controller's namespace.
ctl() {
  in_ns ctl env SESAME_CONTROLLER="$net4.${host_octet[ctl]}:$controller_port" \
    SESAME_CA_CERT="$run/hosts/controller1/etc/sesame/tls/ca.crt" \
    SESAME_CERT="$run/hosts/controller1/var/lib/sesame-pki/operator/oncall.crt" \
    SESAME_KEY="$run/hosts/controller1/var/lib/sesame-pki/operator/oncall.key" \
    "$run/hosts/controller1/usr/bin/sesamectl" --timeout 5s "$@"
}

# controller (ctl), controller2 (ctl2) or controller3 (ctl3).
start_controller() {
  local daemon=${1:-controller} n ns
  n=${daemon#controller}
  n=${n:-1}
  ns=ctl
  [ "$n" = 1 ] || ns=ctl$n
  local root=$run/hosts/controller$n
  record pidfile "$run/$daemon.pid"
  (exec ip netns exec "$prefix$ns" setsid "$root/usr/sbin/sesame-controller" -c "$root/etc/sesame/controller.conf" \
    >>"$run/$daemon.log" 2>&1 </dev/null) &
  echo $! >"$run/$daemon.pid"
  for _ in $(seq 300); do
    if in_ns "$ns" env SESAME_CONTROLLER="$net4.${host_octet[$ns]}:$controller_port" \
      SESAME_CA_CERT="$run/hosts/controller1/etc/sesame/tls/ca.crt" \
      SESAME_CERT="$run/hosts/controller1/var/lib/sesame-pki/operator/oncall.crt" \
      SESAME_KEY="$run/hosts/controller1/var/lib/sesame-pki/operator/oncall.key" \
      "$run/hosts/controller1/usr/bin/sesamectl" --timeout 5s health >/dev/null 2>&1; then return 0; fi
    kill -0 "$(cat "$run/$daemon.pid")" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$run/$daemon.log" >&2
  say "$daemon did not become healthy"
  return 1
}

# The HA bed's etcd member e1-e3 (Ansible's etcd1-3) runs Debian's etcd
# with the environment the sesame_etcd role wrote for Debian's unit.
start_etcd() {
  local m=$1 root=$run/hosts/etcd${1#e}
  record pidfile "$run/$m.pid"
  (set -a && . "$root/etc/default/etcd" && set +a &&
    exec ip netns exec "$prefix$m" setsid etcd >>"$run/$m.log" 2>&1 </dev/null) &
  echo $! >"$run/$m.pid"
}

# etcdctl with controller1's etcd client certificate.
etcdctl_bed() {
  local tls=$run/hosts/controller1/etc/sesame/etcd endpoints="" m
  for m in "${members[@]}"; do endpoints="$endpoints${endpoints:+,}https://$net4.${host_octet[$m]}:$etcd_client_port"; done
  in_ns e1 env ETCDCTL_API=3 etcdctl --endpoints "$endpoints" --cacert "$tls/ca.crt" \
    --cert "$tls/controller.crt" --key "$tls/controller.key" "$@"
}

wait_for_etcd() {
  for _ in $(seq 300); do
    if etcdctl_bed endpoint health >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  say "etcd did not become healthy:"
  tail -n 10 "$run"/e?.log >&2
  return 1
}

start_agent() {
  local b=$1 n=${1#b}
  local root=$run/hosts/bastion$n
  record pidfile "$run/$b-agent.pid"
  in_ns "$b" "$root/usr/sbin/sesame-agent" -c "$root/etc/sesame/agent.conf" -d \
    -p "$run/$b-agent.pid" -g "$run/$b-agent.log"
}

wait_for_agents() {
  local want=${#bastions[@]}
  for _ in $(seq 300); do
    local connected
    connected=$(ctl -o json agents list 2>/dev/null |
      python3 -c 'import json,sys; print(sum(1 for a in json.load(sys.stdin).get("agents", []) if a.get("connected")))' \
        2>/dev/null || echo 0)
    [ "$connected" = "$want" ] && return 0
    sleep 0.1
  done
  say "not every agent connected to the controller:"
  ctl agents list >&2 || true
  return 1
}

describe() {
  local tls=$run/hosts/controller1/var/lib/sesame-pki/operator
  local address=$net4.${host_octet[ctl]}:$controller_port c
  if [ "$ha" = 1 ]; then
    address=""
    for c in "${controllers[@]}"; do address="$address${address:+,}$net4.${host_octet[$c]}:$controller_port"; done
  fi
  cat >"$run/env" <<ENV
export SESAME_CONTROLLER=$address
export SESAME_CA_CERT=$run/hosts/controller1/etc/sesame/tls/ca.crt
export SESAME_CERT=$tls/oncall.crt
export SESAME_KEY=$tls/oncall.key
export PATH=$run/hosts/controller1/usr/bin:\$PATH
ENV
  {
    echo "PREFIX=$prefix"
    echo "RUN_DIR=$run"
    echo "NET4=$net4"
    echo "NET6=$net6"
    echo "CONTROLLER_PORT=$controller_port"
    echo "SSH_PORT=$ssh_port"
    echo "CONSOLE_SSH_PORT=$console_ssh_port"
    echo "COMMAND_SSH_PORT=$command_ssh_port"
    echo "SSH_KEY=$run/ssh/client_key"
    echo "HA=$ha"
  } >"$run/bed.env"
  python3 - "$run/fleet.json" "$prefix" "$net4" "$net6" "$controller_port" "$ssh_port" "$ha" <<'PY'
import json, sys
path, prefix, net4, net6, port, ssh, ha = sys.argv[1:]
octet = {"ctl": 10, "b1": 11, "b2": 12, "b3": 13, "ctl2": 14, "ctl3": 15, "c1": 21, "c2": 22,
         "e1": 31, "e2": 32, "e3": 33}
def host(h):
    return {"netns": prefix + h, "address": f"{net4}.{octet[h]}", "address6": f"{net6}:{octet[h]}"}
fleet = {
    "controller": dict(host("ctl"), port=int(port)),
    "bastions": [dict(host(b), name=f"bastion{b[1]}", ssh_port=int(ssh)) for b in ("b1", "b2", "b3")],
    "clients": [host(c) for c in ("c1", "c2")],
    "doors": [{"name": d} for d in ("openSSH", "fleetSSH", "consoleSSH", "classicSSH")],
}
if ha == "1":
    fleet["controllers"] = [dict(host(c), port=int(port), name=f"controller{i + 1}")
                            for i, c in enumerate(("ctl", "ctl2", "ctl3"))]
    fleet["etcd"] = [dict(host(m), name=m) for m in ("e1", "e2", "e3")]
with open(path + ".tmp", "w") as f:
    json.dump(fleet, f, indent=2)
    f.write("\n")
import os
os.replace(path + ".tmp", path)
PY
}

[ $# -ge 2 ] || usage
command=$1
run=$2
case $command in
  render)
    ha=0
    build=$(cd "${BUILD_DIR:-$repo/build}" && pwd)
    mkdir -p "$run"
    render_into "$(cd "$run" && pwd)"
    exit 0
    ;;
  down)
    down
    exit 0
    ;;
  start)
    [ $# -eq 3 ] || usage
    run=$(cd "$run" && pwd)
    prefix=$(sed -n 's/^PREFIX=//p' "$run/bed.env")
    if [ "$(sed -n 's/^HA=//p' "$run/bed.env")" = 1 ]; then members=(e1 e2 e3); fi
    case $3 in
      controller | controller[23]) start_controller "$3" ;;
      e[1-3]) start_etcd "$3" ;;
      b[1-3]) start_agent "$3" ;;
      *) usage ;;
    esac
    exit 0
    ;;
  up)
    [ $# -ge 3 ] || usage
    prefix=$3
    host_link=0
    ha=0
    for flag in "${@:4}"; do
      case $flag in
        --host-link) host_link=1 ;;
        --ha) ha=1 ;;
        *) usage ;;
      esac
    done
    if [ $ha = 1 ]; then
      controllers=(ctl ctl2 ctl3)
      members=(e1 e2 e3)
    fi
    ;;
  *) usage ;;
esac

build=$(cd "${BUILD_DIR:-$repo/build}" && pwd)
mkdir -p "$run"
run=$(cd "$run" && pwd)
down # what an earlier bed in RUN_DIR left
rm -rf "$run/hosts"
trap 'status=$?; if [ $status -ne 0 ]; then say "failed: removing what was started"; down; fi' EXIT

render
wire
# The clients' key for the bastions' sshd (root logs in with it).
mkdir -p "$run/ssh"
ssh-keygen -q -t ed25519 -N '' -C "sesame fleet bed client" -f "$run/ssh/client_key"
cp "$run/ssh/client_key.pub" "$run/ssh/authorized_keys"
printf 'sshd: ALL\n' >"$run/ssh/allow-all"  # for the sshd the firewall guards
: >"$run/ssh/deny-none"
for b in "${bastions[@]}"; do guard_bastion "$b"; done
if [ $ha = 1 ]; then
  for m in "${members[@]}"; do start_etcd "$m"; done
  wait_for_etcd
  start_controller controller
  start_controller controller2
  start_controller controller3
else
  start_controller
fi
for b in "${bastions[@]}"; do start_agent "$b"; done
wait_for_agents
describe
if [ $ha = 1 ]; then
  say "up: controllers $net4.10,14,15 on etcd $net4.31-33, bastions $net4.11-13, clients $net4.21-22"
else
  say "up: controller $net4.${host_octet[ctl]}, bastions $net4.11-13, clients $net4.21-22"
fi
