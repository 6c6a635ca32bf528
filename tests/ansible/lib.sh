# Shared by the Ansible tests: sourced, not run. Sets up a work directory
# (removed on exit), a snapshot of deploy/, the controller's port with a
# listener standing in for the controller, and helpers to run playbooks
# through render_local_fleet.sh and read their recaps.
#
# Before sourcing: build (the build tree). After: work, base (the fleet's
# root prefixes), port, closed_port, agent, have_agent, and the functions
# below. Exits 77 (ctest: skipped) when Ansible is not installed.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
render=$here/render_local_fleet.sh

if ! command -v ansible-playbook >/dev/null; then
  echo "SKIP: ansible-playbook is not installed (apt-get install ansible)"
  exit 77
fi

work=$(mktemp -d /tmp/sesame-ansible-test.XXXXXX)
base=$work/fleet
listener_pid=""
cleanup() {
  if [ -n "$listener_pid" ]; then kill "$listener_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
started=$(date +%s)
step() { echo "=== [$(($(date +%s) - started)) s] $*"; }

# The units and sesame-pki as they are now: other work on deploy/ while a
# test runs must not look like a change made by a second run.
mkdir -p "$work/src"
cp -a "$here/../../deploy" "$work/src/deploy"
export SESAME_SOURCE_DIR=$work/src

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The controller's port. Until the controller runs from the rendered
# configuration in these tests, a listener stands in for it: the agent role
# only asks whether the port answers. closed_port answers nobody.
port=$(free_port)
closed_port=$(free_port)
export SESAME_CONTROLLER_ADDRESS=127.0.0.1 SESAME_CONTROLLER_PORT=$port
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
s.settimeout(1)
end = time.time() + 900
while time.time() < end:
    try:
        s.accept()[0].close()
    except OSError:
        pass
' "$port" &
listener_pid=$!

agent=$build/agent/sesame-agent
have_agent=0
if [ -x "$agent" ]; then have_agent=1; else echo "NOTE: $agent is not built: assertions that need it are skipped"; fi

# More inventory for every run (per-host variables of a test).
echo "all: {}" >"$work/test-inventory.yml"

# Runs a playbook (PLAYBOOK, default site.yml); its output goes to
# $work/NAME.log. Returns its status.
run() {
  local name=$1
  shift
  echo "--- ansible-playbook $*" >"$work/$name.log"
  if "$render" "$base" "$build" -i "$work/test-inventory.yml" "$@" >>"$work/$name.log" 2>&1; then return 0; else return 1; fi
}
show_log() { tail -n 60 "$work/$1.log" >&2; }
# Sum of a recap counter (changed, failed, ...) over every host of a log.
recap() {
  local key=$1 log=$2
  awk -v k="$key" '/^[A-Za-z0-9_.-]+ +: ok=/ { for (i = 1; i <= NF; i++) if (split($i, kv, "=") == 2 && kv[1] == k) n += kv[2] }
    END { print n + 0 }' "$work/$log.log"
}
expect_clean_run() {
  local name=$1
  shift
  run "$name" "$@" || { show_log "$name"; fail "$name: ansible-playbook failed"; }
  [ "$(recap failed "$name")" -eq 0 ] || { show_log "$name"; fail "$name: a host failed"; }
}
expect_no_change() {
  local name=$1
  shift
  expect_clean_run "$name" "$@"
  [ "$(recap changed "$name")" -eq 0 ] ||
    { grep -B2 -A12 '^changed:' "$work/$name.log" >&2; fail "$name: changed=$(recap changed "$name"), expected 0"; }
}

mode() { stat -c '%a' "$1"; }
serial() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
same_key() { [ "$(openssl x509 -in "$1" -noout -pubkey)" = "$(openssl pkey -in "$2" -pubout)" ]; }
sans() { openssl x509 -in "$1" -noout -ext subjectAltName; }
# A recap counter of one host.
recap_host() {
  local key=$1 log=$2 host=$3
  awk -v k="$key" -v h="$host" '$1 == h && $2 == ":" { for (i = 3; i <= NF; i++) if (split($i, kv, "=") == 2 && kv[1] == k) n += kv[2] }
    END { print n + 0 }' "$work/$log.log"
}
