#!/usr/bin/env bash
# deploy/prometheus: `promtool check rules` on the shipped alert rules and
# `promtool test rules` on their unit tests (sesame.rules.test.yml).
#   prometheus_rules_test.sh DIR
# Exit 77 (ctest: skipped) without promtool (apt-get install prometheus).
set -euo pipefail
dir=${1:?usage: $0 DIR}
if ! command -v promtool >/dev/null; then
  echo "SKIP: promtool is not installed (apt-get install prometheus)"
  exit 77
fi
cd "$dir"
promtool check rules sesame.rules.yml
promtool test rules sesame.rules.test.yml
# Every alert of the rules has a test.
for alert in $(sed -n 's/^ *- alert: *//p' sesame.rules.yml); do
  grep -q "alertname: $alert\$" sesame.rules.test.yml || { echo "FAIL: $alert has no test in sesame.rules.test.yml"; exit 1; }
done
echo "PASS: every alert checked and tested"
