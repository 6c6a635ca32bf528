#!/usr/bin/env bash
# The day-two playbooks on the local fleet (render_local_fleet.sh):
#   - site.yml for controller1 and bastion1 only, then add_bastion.yml brings
#     in bastion2 (its certificate and agent) and changes nothing else;
#   - rotate_certificates.yml renews bastion2's and the controller's
#     certificates, revokes the old ones in the controller's CRL and leaves
#     bastion1 alone;
#   - site.yml afterwards changes nothing;
#   - upgrade_bastions.yml walks the bastions one at a time (serial: 1).
# replenish_sequences.yml needs a running controller: tests/fleet/
# replenish_test.py runs it against the fleet test bed.
#
#   day_two_test.sh BUILD_DIR
# Exit 77 (ctest: skipped) when Ansible is not installed.
set -euo pipefail

build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ctl=$base/controller1
ca=$ctl/etc/sesame/tls/ca.crt

step "rollout of controller1 and bastion1"
expect_clean_run first --limit controller1,bastion1
[ ! -e "$base/bastion2" ] || fail "first: bastion2 was outside --limit but got files"

step "add bastion2"
PLAYBOOK=add_bastion.yml expect_clean_run add -e bastion=bastion2
[ "$(recap_host changed add bastion2)" -gt 0 ] || fail "add: nothing changed on bastion2"
[ "$(recap_host changed add bastion1)" -eq 0 ] || fail "add: bastion1 changed"
[ "$(recap_host changed add controller1)" -eq 0 ] || fail "add: controller1 changed"
! grep -q '^bastion3 ' "$work/add.log" || fail "add: bastion3 was touched"
openssl verify -CAfile "$ca" "$base/bastion2/etc/sesame/tls/agent.crt" >/dev/null || fail "add: bastion2's certificate does not verify"
sans "$base/bastion2/etc/sesame/tls/agent.crt" | grep -q 'URI:spiffe://sesame/agent/bastion2$' || fail "add: wrong identity"
[ "$(cat "$base/bastion2/etc/hosts.allow")" = "sshd: $base/bastion2/var/lib/sesame-agent/hosts.allow" ] ||
  fail "add: a new hosts.allow should hold only the include line"
[ "$(mode "$base/bastion2/etc/hosts.allow")" = 644 ] || fail "add: a new hosts.allow should be 0644"
if [ $have_agent -eq 1 ]; then
  "$agent" --check-config "$base/bastion2/etc/sesame/agent.conf" >/dev/null || fail "add: bastion2's configuration does not check"
fi
if PLAYBOOK=add_bastion.yml run add_unknown -e bastion=bastion9; then fail "add: a bastion outside the inventory was accepted"; fi
grep -q "must be in the inventory's bastions group" "$work/add_unknown.log" || { show_log add_unknown; fail "add_unknown: no clear message"; }

step "rotate bastion2's and the controller's certificates"
old_b2=$(serial "$base/bastion2/etc/sesame/tls/agent.crt")
old_ctl=$(serial "$ctl/etc/sesame/tls/controller.crt")
b1=$(serial "$base/bastion1/etc/sesame/tls/agent.crt")
PLAYBOOK=rotate_certificates.yml expect_clean_run rotate --limit controller1,bastion2
new_b2=$(serial "$base/bastion2/etc/sesame/tls/agent.crt")
[ "$new_b2" != "$old_b2" ] || fail "rotate: bastion2's certificate did not change"
[ "$(serial "$ctl/etc/sesame/tls/controller.crt")" != "$old_ctl" ] || fail "rotate: the controller's certificate did not change"
openssl verify -CAfile "$ca" "$base/bastion2/etc/sesame/tls/agent.crt" >/dev/null || fail "rotate: new certificate does not verify"
same_key "$base/bastion2/etc/sesame/tls/agent.crt" "$base/bastion2/etc/sesame/tls/agent.key" || fail "rotate: key mismatch"
same_key "$ctl/etc/sesame/tls/controller.crt" "$ctl/etc/sesame/tls/controller.key" || fail "rotate: controller key mismatch"
[ "$(serial "$base/bastion1/etc/sesame/tls/agent.crt")" = "$b1" ] || fail "rotate: bastion1 was outside --limit but changed"
revoked=$(openssl crl -in "$ctl/etc/sesame/tls/crl.pem" -noout -text | tr -d ' ')
for s in "$old_b2" "$old_ctl"; do
  grep -qi "SerialNumber:$s\$" <<<"$revoked" || fail "rotate: old certificate $s is not in the controller's CRL"
done
grep -qi "SerialNumber:$new_b2\$" <<<"$revoked" && fail "rotate: the new certificate is revoked"
cmp -s "$(ls "$ctl/etc/sesame/tls/crl.d/"*.r0)" "$ctl/etc/sesame/tls/crl.pem" || fail "rotate: crl.d is stale"

step "site.yml after all that: nothing to change"
expect_no_change settled --limit controller1,bastion1,bastion2

step "upgrade, one bastion at a time"
PLAYBOOK=upgrade_bastions.yml expect_no_change upgrade --limit bastion1,bastion2
[ "$(grep -c '^PLAY \[Upgrade sesame-agent, one bastion at a time\]' "$work/upgrade.log")" -eq 2 ] ||
  fail "upgrade: expected one batch per bastion (serial: 1)"

echo "PASS: day-two playbooks in $(($(date +%s) - started)) s"
