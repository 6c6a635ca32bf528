#!/usr/bin/env bash
# deploy/completion/sesamectl: what TAB offers at each point of a line,
# with the real sesamectl's --help behind it.
#   completion_test.sh COMPLETION_FILE SESAMECTL
set -euo pipefail
completion=${1:?usage: $0 COMPLETION_FILE SESAMECTL}
sesamectl=${2:?usage: $0 COMPLETION_FILE SESAMECTL}
# shellcheck source=/dev/null
. "$completion"
fails=0
# expect "WORDS..." "OFFERED": the line's words (the last one being
# completed) and what TAB must offer, in order.
expect() {
  local want=$1
  shift
  COMP_WORDS=("$sesamectl" "$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  _sesamectl
  local got="${COMPREPLY[*]}"
  if [ "$got" != "$want" ]; then
    echo "FAIL: sesamectl $* <TAB>: expected '$want', got '$got'"
    fails=1
  fi
}
expect "health agents doors sequences grants audit stats" ""
expect "sequences stats" s
expect "issue claim list" sequences ""
expect "issue" -o json sequences i                       # a global flag before the noun
expect "issue" --controller a:7443,b:7443 sequences i   # and its value skipped
expect "list show" agents ""
expect "tail export verify pubkey head" audit ""
expect "--ca-cert --cert --controller --count --door --expires --for --help --key --output --reserve --timeout" sequences issue --
expect "--door" sequences issue --do
expect "table json" sequences issue --door x -o ""
expect "json" grants list --output j
expect "" sequences issue --door ""                       # a door name: nothing to guess
expect "--all" grants list --ip 192.0.2.1 --a             # a global or verb option's value skipped
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
touch "$work/alice.crt" "$work/alice.key"
expect "$work/alice.crt" --cert "$work/alice.c"
expect "$work/alice.key" audit verify --pubkey "$work/alice.k"
complete -p sesamectl | grep -q -- '-F _sesamectl sesamectl' || { echo "FAIL: not registered for sesamectl"; fails=1; }
[ $fails -eq 0 ] && echo "PASS: sesamectl completion"
exit $fails
