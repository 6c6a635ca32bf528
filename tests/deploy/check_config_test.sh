#!/usr/bin/env bash
# Every agent example passes the real binary's --check-config, and a broken
# one fails with FILE:LINE. The examples keep their state under
# /var/lib/sesame-agent and the managed agent's certificates under
# /etc/sesame/tls: each is checked as a copy with both moved to a temporary
# directory holding its one-time files and certificates made by sesame-pki.
#
#   bash tests/deploy/check_config_test.sh PATH/TO/sesame-agent EXAMPLES_DIR [SESAME_PKI]
set -uo pipefail
agent=${1:?usage: check_config_test.sh SESAME_AGENT EXAMPLES_DIR}
examples=${2:?usage: check_config_test.sh SESAME_AGENT EXAMPLES_DIR}
pki=${3:-$examples/../pki/sesame-pki}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

bash "$pki" init "$tmp/pki" >/dev/null && bash "$pki" agent "$tmp/pki" bastion1 >/dev/null ||
  { echo "FAIL sesame-pki could not make the managed agent's certificates"; exit 1; }
for example in knockd-standalone.conf agent-nftables.conf agent.conf agent-managed.conf; do
  state=$tmp/${example%.conf}
  mkdir -p "$state/tls"
  cp "$tmp/pki/ca.crt" "$state/tls/ca.crt"
  cp "$tmp/pki/agent/bastion1.crt" "$state/tls/agent.crt"
  cp "$tmp/pki/agent/bastion1.key" "$state/tls/agent.key"
  sed "s#/var/lib/sesame-agent#$state#g; s#/etc/sesame/tls#$state/tls#g" "$examples/$example" >"$state/$example"
  grep -i '^ *one_time_sequences *=' "$state/$example" | sed 's/^[^=]*= *//' | while read -r file; do
    : >"$file"
  done
  if out=$("$agent" --check-config "$state/$example" 2>&1); then
    echo "ok   $example passes --check-config"
  else
    echo "FAIL $example: $out"
    failures=$((failures + 1))
  fi
done

printf '[openSSH]\n  sequence = 7000,8000,9000\n  backend = hosts_alow\n' >"$tmp/bad.conf"
out=$("$agent" --check-config "$tmp/bad.conf" 2>&1)
rc=$?
if [ $rc -ne 0 ] && printf '%s' "$out" | grep -q "bad.conf:3"; then
  echo "ok   a bad configuration fails with its file and line"
else
  echo "FAIL a bad configuration: exit $rc, said: $out"
  failures=$((failures + 1))
fi

# Files no agent can use, named by One_Time_Sequences: an error at that
# line, never a crash (128+ is a signal: /dev/zero once aborted with
# std::bad_alloc) and never a hang (a FIFO without a writer).
mkfifo "$tmp/fifo"
mkdir "$tmp/dir"
truncate -s 17M "$tmp/huge"
for named in /dev/zero "$tmp/dir" "$tmp/fifo" "$tmp/huge"; do
  printf '[openSSH]\n  one_time_sequences = %s\n  start_command = /bin/true %%IP%%\n' "$named" >"$tmp/named.conf"
  out=$(timeout 20 "$agent" --check-config "$tmp/named.conf" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 124 ] && printf '%s' "$out" | grep -q "named.conf:2: One_Time_Sequences: $named"; then
    echo "ok   One_Time_Sequences = $named fails with its file and line"
  else
    echo "FAIL One_Time_Sequences = $named: exit $rc, said: $out"
    failures=$((failures + 1))
  fi
done

[ $failures -eq 0 ] || { echo "$failures check(s) failed"; exit 1; }
echo "all checks passed"
