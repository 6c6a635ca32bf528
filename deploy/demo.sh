#!/usr/bin/env bash
# The sesame demo on this one machine, as root: installs what is needed,
# builds, and brings up a fleet in network namespaces (tests/fleet/bed.sh):
# sesame-controller, three bastions guarded by sesame-agent behind a
# default-deny firewall, and two client hosts, configured by the Ansible
# roles. Then it issues a one-time sequence with sesamectl, knocks with
# Debian's knock client, shows the door open (on that bastion only) and the
# audit trail, and leaves the fleet running. `deploy/demo.sh --down` removes
# it all; running the demo again starts from scratch.
#
# `deploy/demo.sh --ha`: the same fleet with three controllers sharing a
# three-member etcd cluster (bed.sh --ha); after the knock it kills the
# controller bastion1 uses and knocks again.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
run=/run/sesame-demo
prefix=sesame-

down() {
  if [ -f "$run/created" ]; then bash "$repo/tests/fleet/bed.sh" down "$run"; fi
  rm -rf "$run"
}

ha=()
case "${1:-}" in
  --down)
    down
    echo "sesame demo removed"
    exit 0
    ;;
  --ha) ha=(--ha) ;;
  "") ;;
  *) echo "usage: deploy/demo.sh [--ha | --down]" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then echo "demo.sh: run as root" >&2; exit 1; fi

./deploy/install-deps.sh
./deploy/build.sh >/dev/null
down # a second run starts from scratch

# Grants last five minutes in the demo (the tests use seconds).
SESAME_FLEET_TTL=5m BUILD_DIR=$repo/build bash tests/fleet/bed.sh up "$run" "$prefix" --host-link ${ha[@]+"${ha[@]}"}
# shellcheck source=/dev/null
. "$run/env"
b1=198.18.20.11 b2=198.18.20.12

# try_ssh ADDRESS [CLIENT]: a real OpenSSH login as root on ADDRESS from
# CLIENT (c1), with the bed's throwaway client key, running one command on
# the bastion (Debian's sshd in the bastion's namespace).
try_ssh() {
  echo "  \$ ssh root@$1 'ip -4 -brief address show dev eth0'   (from ${2:-c1})"
  ip netns exec "${prefix}${2:-c1}" ssh -i "$run/ssh/client_key" -o BatchMode=yes -o ConnectTimeout=3 \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "root@$1" \
    'ip -4 -brief address show dev eth0' 2>&1 | sed 's/^/  /' || true  # refused is part of the story
}

# Each bastion's offline reserve: what still opens it while no controller
# answers. The controller keeps 3 per bastion (door openSSH, Offline_Reserve)
# on its own; claiming one shows its knocks, once, so the knock line is kept
# for the story at the end.
for _ in $(seq 300); do
  sesamectl -o json agents list 2>/dev/null | python3 -c '
import json, sys
agents = json.load(sys.stdin)["agents"]
sys.exit(0 if len(agents) == 3 and all(a["reserve_left"] >= 3 for a in agents) else 1)' && break
  sleep 0.1
done
for n in 1 2 3; do
  sesamectl sequences claim --door openSSH --reserve "bastion$n" --for demo-reserve |
    grep -m1 "knock 198.18.20.1$n " | sed 's/^ *//' >"$run/b$n-reserve-knock"
done
echo
echo "== the fleet (sesamectl agents list): each bastion holds an offline reserve of 3"
sesamectl agents list
echo
echo "== an operator gets a one-time sequence for door openSSH (shown once)"
issued=$(sesamectl sequences issue --door openSSH --for demo)
echo "$issued" | sed 's/^/  /'
knock_line=$(echo "$issued" | grep -m1 "knock $b1 " | sed 's/^ *//')
echo
echo "== client c1 before the knock"
try_ssh "$b1"
echo "== $knock_line   (Debian's knock client, from c1)"
ip netns exec "${prefix}c1" $knock_line
for _ in $(seq 50); do
  ip netns exec "${prefix}c1" python3 -c "import socket; socket.create_connection(('$b1', 22), timeout=0.2)" \
    2>/dev/null && break
  sleep 0.1
done
echo "== after the knock: bastion1 opens for c1, bastion2 does not"
try_ssh "$b1"
try_ssh "$b2"
echo "== the same sequence again: a replay, refused"
ip netns exec "${prefix}c1" $knock_line
echo
echo "== the audit trail (sesamectl audit tail -n 8)"
sleep 0.5
sesamectl audit tail -n 8 | sed 's/^/  /'
echo
echo "== sesamectl audit verify"
sesamectl audit verify | sed 's/^/  /'

if [ ${#ha[@]} -gt 0 ]; then
  echo
  echo "== three controllers, one store: etcd's members (etcdctl member list)"
  ip netns exec "${prefix}e1" env ETCDCTL_API=3 etcdctl --endpoints https://198.18.20.31:2379 \
    --cacert "$run/hosts/controller1/etc/sesame/etcd/ca.crt" --cert "$run/hosts/controller1/etc/sesame/etcd/controller.crt" \
    --key "$run/hosts/controller1/etc/sesame/etcd/controller.key" member list | sed 's/^/  /'
  echo "== controller1, the one bastion1 talks to, is killed (SIGKILL)"
  kill -9 "$(cat "$run/controller.pid")"
  issued=$(sesamectl sequences issue --door openSSH --for demo-ha)
  knock_line=$(echo "$issued" | grep -m1 "knock $b1 " | sed 's/^ *//')
  echo "== a new sequence from the controllers left; $knock_line   (from c2)"
  ip netns exec "${prefix}c2" $knock_line
  for _ in $(seq 50); do
    ip netns exec "${prefix}c2" python3 -c "import socket; socket.create_connection(('$b1', 22), timeout=0.2)" \
      2>/dev/null && break
    sleep 0.1
  done
  try_ssh "$b1" c2
  grep "controller session open" "$run/b1-agent.log" | tail -n 2 | sed 's/^/  bastion1: /'
  bash tests/fleet/bed.sh start "$run" controller
  echo "== controller1 started again"
fi

cat <<NEXT

The fleet stays up. Its description: $run/fleet.json. Try next:
  . $run/env                                   # sesamectl as operator "oncall"
  sesamectl agents list; sesamectl grants list; sesamectl stats
  sesamectl sequences issue --door fleetSSH    # one knock opens every bastion
  ip netns exec ${prefix}c2 knock ...              # knock from client c2 (paste a line from above)
  sesamectl grants revoke --ip 198.18.20.21    # shut c1 out everywhere
  sesamectl audit tail -f                      # watch the fleet
  ip netns exec ${prefix}c1 knock $b1 7000 8000:udp 9000   # a classic knockd door beside the managed ones
  ip netns exec ${prefix}c1 ssh -i $run/ssh/client_key root@198.18.20.11   # log in (within the grant)
  ip netns exec ${prefix}b1 nft list table inet sesame      # grants in bastion1's firewall
  tail -f $run/b1-agent.log $run/controller.log
NEXT
if [ ${#ha[@]} -eq 0 ]; then
  cat <<NEXT
  # The controller down: bastion1 still opens, for its offline reserve only.
  kill -9 \$(cat $run/controller.pid)
  ip netns exec ${prefix}c1 \$(cat $run/b1-reserve-knock)
  bash tests/fleet/bed.sh start $run controller    # back: the reserve use audited once
  sesamectl audit tail -n 5; sesamectl agents list # bastion1's reserve replaced within 10 s
NEXT
fi
if [ ${#ha[@]} -gt 0 ]; then
  cat <<NEXT
  kill -9 \$(cat $run/e2.pid)                      # an etcd member down: the fleet goes on
  bash tests/fleet/bed.sh start $run e2        # and back
  sesamectl health                             # the first serving controller of \$SESAME_CONTROLLER
NEXT
fi
echo "  deploy/demo.sh --down                        # remove everything"
