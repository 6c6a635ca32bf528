#!/usr/bin/env bash
# ansible-lint (profile production, offline: ansible/.ansible-lint) and
# ansible-playbook --syntax-check on every playbook of ansible/.
set -euo pipefail
# Ansible refuses to start when its stdin is non-blocking, and under ctest
# stdin is one file shared by every test running at once, any of which may
# set O_NONBLOCK on it. Ansible needs no input here.
exec </dev/null
ansible_dir=$(cd "$(dirname "$0")/../../ansible" && pwd)
cd "$ansible_dir"

if ! command -v ansible-playbook >/dev/null; then
  echo "SKIP: ansible-playbook is not installed (apt-get install ansible)"
  exit 77
fi
export ANSIBLE_CONFIG=$ansible_dir/ansible.cfg ANSIBLE_NOCOLOR=1
work=$(mktemp -d /tmp/sesame-ansible-lint.XXXXXX)
trap 'rm -rf "$work"' EXIT
export ANSIBLE_LOCAL_TEMP=$work HOME=$work

for playbook in *.yml; do
  for inventory in inventories/*/hosts.yml; do
    ansible-playbook -i "$inventory" --syntax-check "$playbook" >"$work/syntax.log" 2>&1 ||
      { cat "$work/syntax.log"; echo "FAIL: --syntax-check $playbook with $inventory"; exit 1; }
  done
done
echo "syntax-check: $(ls *.yml | wc -l) playbooks pass with every inventory"

if ! command -v ansible-lint >/dev/null; then
  echo "SKIP: ansible-lint is not installed (apt-get install ansible-lint); only --syntax-check ran"
  exit 77
fi
# ansible-lint writes its cache under the project (.cache/); keep it in $work.
cp -a "$ansible_dir" "$work/ansible"
cd "$work/ansible"
ansible-lint --nocolor --offline --profile production
