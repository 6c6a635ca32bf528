#!/usr/bin/env bash
# The sesame demo on this one machine, as root: installs what is needed,
# builds, and starts a bastion guarded by sesame-agent in a network namespace
# with a client namespace beside it; knocks, shows the door opening, and
# leaves everything running. `deploy/demo.sh --down` removes it all.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
run=/run/sesame-demo
bastion_ns=sesame-b1
client_ns=sesame-c1
bastion_v4=198.18.10.1 client_v4=198.18.10.2
bastion_v6=fd5e:10::1 client_v6=fd5e:10::2

down() {
  for pidfile in "$run"/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  ip netns del "$bastion_ns" 2>/dev/null || true
  ip netns del "$client_ns" 2>/dev/null || true
  rm -rf "$run"
}

if [ "${1:-}" = "--down" ]; then
  down
  echo "sesame demo removed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then echo "demo.sh: run as root" >&2; exit 1; fi

./deploy/install-deps.sh
./deploy/build.sh >/dev/null
agent=$repo/build/agent/sesame-agent
down  # a second run starts from scratch

mkdir -p "$run/b1"
ip netns add "$bastion_ns"
ip netns add "$client_ns"
ip -n "$bastion_ns" link add b1-eth0 type veth peer name c1-eth0 netns "$client_ns"
for ns in "$bastion_ns" "$client_ns"; do ip -n "$ns" link set lo up; done
ip -n "$bastion_ns" addr add "$bastion_v4/24" dev b1-eth0
ip -n "$bastion_ns" addr add "$bastion_v6/64" dev b1-eth0 nodad
ip -n "$client_ns" addr add "$client_v4/24" dev c1-eth0
ip -n "$client_ns" addr add "$client_v6/64" dev c1-eth0 nodad
ip -n "$bastion_ns" link set b1-eth0 up
ip -n "$client_ns" link set c1-eth0 up

# The bastion's own policy: nothing gets in unless sesame marked it granted.
ip netns exec "$bastion_ns" nft -f - <<'NFT'
table inet host {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iif lo accept
    meta l4proto { icmp, ipv6-icmp } accept
    meta mark & 0x5e5a0000 == 0x5e5a0000 accept
  }
}
NFT

# A stand-in for sshd on port 22: it greets and hangs up.
ip netns exec "$bastion_ns" python3 - >"$run/b1/sshd.log" 2>&1 <<'PY' &
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 22)); s.listen(16)
while True:
    c, _ = s.accept(); c.sendall(b"SSH-2.0-sesame-demo-bastion\r\n"); c.close()
PY
echo $! >"$run/sshd.pid"

# A knockd.conf: a fixed door, and a one-time door (knockd's file format).
cat >"$run/b1/knockd.conf" <<CONF
[options]
  LogFile   = $run/b1/agent.log
  StateDir  = $run/b1/state

[openSSH]
  sequence    = 7000,8000:udp,9000
  seq_timeout = 5
  backend     = nftables
  ports       = 22
  cmd_timeout = 60

[oneTime]
  one_time_sequences = $run/b1/one-time-sequences
  seq_timeout = 5
  backend     = nftables
  ports       = 22
  cmd_timeout = 60
CONF
printf ' 4101,4202:udp,4303\n 5101,5202,5303:udp\n 6101,6202,6303\n' >"$run/b1/one-time-sequences"

ip netns exec "$bastion_ns" "$agent" -i b1-eth0 -c "$run/b1/knockd.conf" -p "$run/agent.pid" -d
for _ in $(seq 100); do grep -q "sesame-agent started" "$run/b1/agent.log" 2>/dev/null && break; sleep 0.1; done

cat >"$run/env" <<ENV
export SESAME_DEMO_BASTION=$bastion_v4
export SESAME_DEMO_BASTION_NS=$bastion_ns
export SESAME_DEMO_CLIENT_NS=$client_ns
ENV
cat >"$run/fleet.json" <<JSON
{"controller": null,
 "bastions": [{"name": "b1", "netns": "$bastion_ns", "address": "$bastion_v4", "address6": "$bastion_v6", "ssh_port": 22}],
 "clients": [{"netns": "$client_ns", "address": "$client_v4", "address6": "$client_v6"}],
 "doors": [{"name": "openSSH"}, {"name": "oneTime"}]}
JSON

try_ssh() {
  ip netns exec "$client_ns" python3 -c "
import socket, sys
try:
    print('  connected:', socket.create_connection(('$1', 22), timeout=2).recv(64).decode().strip())
except OSError as e:
    print('  refused or silent:', e); sys.exit(1)" || true
}

echo
echo "== bastion $bastion_v4 before the knock"
try_ssh "$bastion_v4"
echo "== knock $bastion_v4 7000 8000:udp 9000 (Debian's knock client, from $client_ns)"
ip netns exec "$client_ns" knock "$bastion_v4" 7000 8000:udp 9000
sleep 0.2
echo "== after the knock"
try_ssh "$bastion_v4"
echo "== the agent's log"
sed 's/^/  /' "$run/b1/agent.log" | tail -n 5
cat <<NEXT

The bastion stays up. Try next:
  ip netns exec $client_ns knock -6 $bastion_v6 7000 8000:udp 9000      # the same door over IPv6
  ip netns exec $client_ns knock $bastion_v4 4101 4202:udp 4303         # a one-time sequence: works once
  ip netns exec $bastion_ns nft list table inet sesame                  # the grants, with their timeouts
  cat $run/b1/one-time-sequences                                        # used lines start with '#'
  tail -f $run/b1/agent.log
  kill -USR1 \$(cat $run/agent.pid)                                     # statistics into the log
  deploy/demo.sh --down                                                  # remove everything
NEXT
