#!/usr/bin/env bash
# Renders the local fleet (ansible/inventories/local: controller1, bastion1-3)
# into BASE/<host>/ with a local connection, from the binaries of BUILD_DIR.
# Nothing outside BASE changes: no systemd, no users, no /etc.
#
#   tests/ansible/render_local_fleet.sh BASE BUILD_DIR [ansible-playbook args...]
#
# Extra arguments go to ansible-playbook (-e key=value, --check, --limit,
# -i more-inventory.yml for per-host variables). PLAYBOOK (default site.yml)
# picks another playbook of ansible/. SESAME_SOURCE_DIR (default this tree)
# is where deploy/ (units, sesame-pki) is taken from. Binaries that
# BUILD_DIR lacks are not installed and not used for validation; each such
# skip is said on stderr.
# The layout of BASE is documented in ansible/README.md.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 BASE BUILD_DIR [ansible-playbook args...]" >&2
  exit 2
fi
base=$1
build=$(cd "$2" && pwd)
shift 2
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
ansible_dir=$source_dir/ansible

command -v ansible-playbook >/dev/null || { echo "ansible-playbook is not installed (apt-get install ansible)" >&2; exit 127; }
mkdir -p "$base"

export SESAME_LOCAL_BASE=$base
export SESAME_BUILD_DIR=$build
# Ansible refuses to start when its stdin is non-blocking, and under ctest
# stdin is one file shared by every test running at once, any of which may
# set O_NONBLOCK on it. Ansible needs no input here.
exec </dev/null
export ANSIBLE_CONFIG=$ansible_dir/ansible.cfg
# Ansible's own temporary files: neither in BASE nor in the home directory.
tmp=$(mktemp -d /tmp/sesame-ansible-tmp.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export ANSIBLE_LOCAL_TEMP=$tmp ANSIBLE_REMOTE_TEMP=$tmp
export ANSIBLE_NOCOLOR=1
export ANSIBLE_FORCE_COLOR=0

extra=()
if [ -n "${SESAME_SOURCE_DIR:-}" ]; then extra+=(-e "sesame_source_dir=$SESAME_SOURCE_DIR"); fi
if [ ! -x "$build/agent/sesame-agent" ]; then
  echo "render_local_fleet: $build/agent/sesame-agent is not built: the agent is not installed and configurations are not checked with it" >&2
  extra+=(-e sesame_agent_install_binary=false -e sesame_agent_validate=false)
fi
controller=$build/controller/sesame-controller
if [ ! -x "$controller" ]; then
  echo "render_local_fleet: $controller is not built: the controller is not installed and its configuration is not checked" >&2
  extra+=(-e sesame_controller_install_binaries=false -e sesame_controller_validate=false)
else
  # sesamectl may live beside the controller or in its cli/ directory.
  sesamectl=$(find "$build/controller" -maxdepth 2 -name sesamectl -type f -perm -u+x | head -n 1)
  extra+=(-e "sesame_controller_sesamectl_src=${sesamectl}")
  if ! "$controller" --help 2>&1 | grep -q -- --check-config; then
    echo "render_local_fleet: $controller has no --check-config: its configuration is not checked" >&2
    extra+=(-e sesame_controller_validate=false)
  fi
fi

cd "$ansible_dir"
ansible-playbook -i inventories/local/hosts.yml "${PLAYBOOK:-site.yml}" ${extra[@]+"${extra[@]}"} "$@"
