#!/usr/bin/env bash
# deploy/pki/sesame-pki end to end: every command in a temporary directory,
# checked with OpenSSL itself (chains, purposes, SANs, CRL), file modes,
# idempotence, bad input, and a real mutual-TLS handshake on loopback that
# admits a good client certificate and refuses a revoked one.
#
#   bash tests/deploy/pki_test.sh [PATH/TO/sesame-pki]
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
pki=${1:-$here/../../deploy/pki/sesame-pki}
command -v openssl >/dev/null || { echo "SKIP: openssl is not installed"; exit 0; }

tmp=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
dir=$tmp/pki
failures=0

pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
# check DESCRIPTION COMMAND...: the command must succeed.
check() {
  local what=$1; shift
  if "$@" >"$tmp/out" 2>&1; then pass "$what"; else fail "$what"; sed 's/^/     /' "$tmp/out"; fi
}
# refuse DESCRIPTION EXIT_CODE PATTERN COMMAND...: the command must fail with
# that exit code and say PATTERN on stderr.
refuse() {
  local what=$1 code=$2 pattern=$3; shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ $rc -eq "$code" ] && grep -q -- "$pattern" "$tmp/err"; then
    pass "$what"
  else
    fail "$what (exit $rc, wanted $code and '$pattern')"
    sed 's/^/     /' "$tmp/out" "$tmp/err"
  fi
}
mode_is() { [ "$(stat -c %a "$1")" = "$2" ]; }
sans_of() { openssl x509 -in "$1" -noout -ext subjectAltName | tail -n +2 | tr -d ' '; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
crl_has() { openssl crl -in "$dir/crl.pem" -noout -text | grep -q "Serial Number: $1"; }

# --- usage errors --------------------------------------------------------
refuse "no command is a usage error" 2 "Usage" bash "$pki"
refuse "an unknown command is a usage error" 2 "unknown command 'frobnicate'" bash "$pki" frobnicate "$dir"
refuse "a command without DIR is a usage error" 2 "init takes DIR" bash "$pki" init
refuse "an agent without a name is a usage error" 2 "agent takes DIR NAME" bash "$pki" agent "$dir"
refuse "a name with a slash is refused" 2 "invalid name 'a/b'" bash "$pki" agent "$dir" a/b
refuse "a name with spaces is refused" 2 "invalid name" bash "$pki" agent "$dir" "a b"
refuse "--dns is for servers only" 2 "certificates of a controller and of an etcd member only" bash "$pki" agent "$dir" b1 --dns x.example
refuse "a bad --days is refused" 2 "--days" bash "$pki" agent "$dir" b1 --days soon
refuse "a bad --ip is refused" 2 "not an IPv4 or IPv6 address" bash "$pki" controller "$dir" c1 --ip 10.0.0.x
refuse "an unknown option is refused" 2 "unknown option '--frob'" bash "$pki" list "$dir" --frob
refuse "an uninitialised directory is named" 1 "not a sesame PKI directory" bash "$pki" agent "$dir" b1
check "--help prints the usage" bash -c "bash '$pki' --help | grep -q 'sesame-pki COMMAND DIR'"

# --- init ------------------------------------------------------------------
check "init creates the CA" bash "$pki" init "$dir"
check "the CA certificate verifies against itself" openssl verify -CAfile "$dir/ca.crt" "$dir/ca.crt"
check "the CA key is ECDSA P-256" bash -c "openssl pkey -in '$dir/private/ca.key' -noout -text | grep -q 'NIST CURVE: P-256'"
check "the CA is a CA with pathlen 0" bash -c "openssl x509 -in '$dir/ca.crt' -noout -ext basicConstraints | grep -q 'CA:TRUE, pathlen:0'"
check "init writes an empty CRL signed by the CA" openssl crl -in "$dir/crl.pem" -CAfile "$dir/ca.crt" -noout
check "the CRL has a hashed copy for gRPC's crl_directory" \
  test -f "$dir/crl.d/$(openssl crl -in "$dir/crl.pem" -noout -hash).r0"
ca_hash=$(sha "$dir/private/ca.key")
check "init again does nothing" bash -c "bash '$pki' init '$dir' | grep -q 'nothing to do'"
check "init again keeps the CA key" test "$(sha "$dir/private/ca.key")" = "$ca_hash"
refuse "init --force is refused" 1 "invalidates every certificate" bash "$pki" init "$dir" --force

# --- controller ------------------------------------------------------------
check "controller issues a server certificate" \
  bash "$pki" controller "$dir" ctl1 --dns ctl1.example.net --ip 127.0.0.1 --ip ::1
crt=$dir/controller/ctl1.crt
check "the controller certificate verifies as a TLS server" openssl verify -CAfile "$dir/ca.crt" -purpose sslserver "$crt"
refuse "the controller certificate is no TLS client certificate" 2 "" \
  openssl verify -CAfile "$dir/ca.crt" -purpose sslclient "$crt"
check "the controller SANs: its name, --dns, --ip and its SPIFFE id" test "$(sans_of "$crt")" = \
  "DNS:ctl1,DNS:ctl1.example.net,IPAddress:127.0.0.1,IPAddress:0:0:0:0:0:0:0:1,URI:spiffe://sesame/controller/ctl1"
check "the controller key is ECDSA P-256" bash -c "openssl pkey -in '$dir/controller/ctl1.key' -noout -text | grep -q 'NIST CURVE: P-256'"
key_hash=$(sha "$dir/controller/ctl1.key")
crt_hash=$(sha "$crt")
check "controller again with the same SANs does nothing" \
  bash -c "bash '$pki' controller '$dir' ctl1 --ip ::1 --dns ctl1.example.net --ip 127.0.0.1 | grep -q 'nothing to do'"
check "... and keeps key and certificate" test "$(sha "$dir/controller/ctl1.key")$(sha "$crt")" = "$key_hash$crt_hash"
refuse "controller with other SANs asks for --renew" 1 "use --renew" bash "$pki" controller "$dir" ctl1 --dns other.example
old_serial=$(serial_of "$crt")
check "controller --renew reissues with the new SANs" bash "$pki" controller "$dir" ctl1 --dns other.example --renew
check "... keeping the key" test "$(sha "$dir/controller/ctl1.key")" = "$key_hash"
check "... with the new SANs" test "$(sans_of "$crt")" = "DNS:ctl1,DNS:other.example,URI:spiffe://sesame/controller/ctl1"
check "... and the old certificate is in the CRL" crl_has "$old_serial"

# --- agent and operator ----------------------------------------------------
check "agent issues a client certificate" bash "$pki" agent "$dir" bastion1
crt=$dir/agent/bastion1.crt
check "the agent certificate verifies as a TLS client" openssl verify -CAfile "$dir/ca.crt" -purpose sslclient "$crt"
refuse "the agent certificate is no TLS server certificate" 2 "" openssl verify -CAfile "$dir/ca.crt" -purpose sslserver "$crt"
check "the agent's name is in a URI SAN with the agent role" test "$(sans_of "$crt")" = "URI:spiffe://sesame/agent/bastion1"
check "the agent's subject carries the role" \
  bash -c "openssl x509 -in '$crt' -noout -subject -nameopt compat | grep -q '/O=sesame/OU=agent/CN=bastion1'"
check "operator issues a client certificate" bash "$pki" operator "$dir" alice
crt=$dir/operator/alice.crt
check "the operator certificate verifies as a TLS client" openssl verify -CAfile "$dir/ca.crt" -purpose sslclient "$crt"
check "the operator holds the admin role in its URI SAN" test "$(sans_of "$crt")" = "URI:spiffe://sesame/admin/alice"
check "the operator's subject carries the admin role" \
  bash -c "openssl x509 -in '$crt' -noout -subject -nameopt compat | grep -q '/O=sesame/OU=admin/CN=alice'"
key_hash=$(sha "$dir/agent/bastion1.key")
check "agent again does nothing" bash -c "bash '$pki' agent '$dir' bastion1 | grep -q 'nothing to do'"
check "... and keeps the key" test "$(sha "$dir/agent/bastion1.key")" = "$key_hash"
old_serial=$(serial_of "$dir/agent/bastion1.crt")
check "agent --force makes a new key and certificate" bash "$pki" agent "$dir" bastion1 --force
check "... the key changed" test "$(sha "$dir/agent/bastion1.key")" != "$key_hash"
check "... the new certificate matches the new key" test \
  "$(openssl x509 -in "$dir/agent/bastion1.crt" -noout -pubkey | sha256sum)" = \
  "$(openssl pkey -in "$dir/agent/bastion1.key" -pubout | sha256sum)"
check "... and the superseded one is in the CRL" crl_has "$old_serial"
check "the same name may be an agent and an operator" bash "$pki" operator "$dir" bastion1

# A key left without its certificate (an interrupted run) is kept and used.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/agent/bastion2.key" 2>/dev/null
chmod 0600 "$dir/agent/bastion2.key"
key_hash=$(sha "$dir/agent/bastion2.key")
check "agent completes a key left without certificate" bash "$pki" agent "$dir" bastion2
check "... using that key" test "$(sha "$dir/agent/bastion2.key")" = "$key_hash"

# --- revoke and crl --------------------------------------------------------
bastion2_serial=$(serial_of "$dir/agent/bastion2.crt")
check "revoke revokes an agent" bash "$pki" revoke "$dir" bastion2 --reason keyCompromise
check "... its serial is in the CRL" crl_has "$bastion2_serial"
check "... the CRL still verifies against the CA" openssl crl -in "$dir/crl.pem" -CAfile "$dir/ca.crt" -noout
refuse "... openssl verify with the CRL refuses it" 2 "" \
  openssl verify -crl_check -CRLfile "$dir/crl.pem" -CAfile "$dir/ca.crt" "$dir/agent/bastion2.crt"
check "... a valid agent still verifies with the CRL" \
  openssl verify -crl_check -CRLfile "$dir/crl.pem" -CAfile "$dir/ca.crt" "$dir/agent/bastion1.crt"
check "revoke again does nothing" bash -c "bash '$pki' revoke '$dir' bastion2 | grep -q 'already revoked'"
refuse "a revoked agent is not silently re-issued" 1 "is revoked; use --force" bash "$pki" agent "$dir" bastion2
refuse "revoke of an ambiguous name asks for --role" 1 "say which with --role" bash "$pki" revoke "$dir" bastion1
refuse "revoke of an unknown name says so" 1 "no certificate named nobody" bash "$pki" revoke "$dir" nobody
refuse "a bad reason is refused" 2 "--reason" bash "$pki" revoke "$dir" alice --reason because
check "revoke --role picks one of them" bash "$pki" revoke "$dir" bastion1 --role operator
check "... and leaves the agent valid" \
  openssl verify -crl_check -CRLfile "$dir/crl.pem" -CAfile "$dir/ca.crt" "$dir/agent/bastion1.crt"
number_before=$(openssl crl -in "$dir/crl.pem" -noout -crlnumber)
check "crl re-signs the CRL" bash "$pki" crl "$dir" --days 30
check "... with a higher number" test "$(openssl crl -in "$dir/crl.pem" -noout -crlnumber)" != "$number_before"
check "... and keeps the revoked serials" crl_has "$bastion2_serial"
check "... and the hashed copy is the same CRL" \
  cmp -s "$dir/crl.pem" "$dir/crl.d/$(openssl crl -in "$dir/crl.pem" -noout -hash).r0"

# --- list ------------------------------------------------------------------
bash "$pki" list "$dir" >"$tmp/list" 2>&1
check "list shows the header" grep -q '^ROLE  *NAME  *STATUS  *NOT_AFTER  *SERIAL' "$tmp/list"
check "list shows the revoked agent" grep -Eq '^agent +bastion2 +revoked ' "$tmp/list"
check "list shows the valid operator" grep -Eq '^operator +alice +valid ' "$tmp/list"
check "list shows the controller" grep -Eq '^controller +ctl1 +valid ' "$tmp/list"

# --- audit key -------------------------------------------------------------
check "audit-key makes an Ed25519 key" bash "$pki" audit-key "$dir"
check "... PKCS#8 private key" grep -q 'BEGIN PRIVATE KEY' "$dir/audit/audit.key"
check "... of type Ed25519" bash -c "openssl pkey -in '$dir/audit/audit.key' -noout -text | grep -q '^ED25519 Private-Key'"
check "... and its public half" bash -c "openssl pkey -pubin -in '$dir/audit/audit.pub' -noout -text | grep -q '^ED25519 Public-Key'"
echo "checkpoint" >"$tmp/message"
check "... which verifies what the key signs" bash -c "
  openssl pkeyutl -sign -rawin -inkey '$dir/audit/audit.key' -in '$tmp/message' -out '$tmp/sig' &&
  openssl pkeyutl -verify -rawin -pubin -inkey '$dir/audit/audit.pub' -in '$tmp/message' -sigfile '$tmp/sig'"
key_hash=$(sha "$dir/audit/audit.key")
check "audit-key again keeps the key" bash -c "bash '$pki' audit-key '$dir' | grep -q 'nothing to do' && test \"\$(sha256sum '$dir/audit/audit.key' | cut -d' ' -f1)\" = $key_hash"

# --- modes -----------------------------------------------------------------
check "DIR is 0700" mode_is "$dir" 700
for sub in private db agent operator controller audit; do check "$sub/ is 0700" mode_is "$dir/$sub" 700; done
for key in "$dir/private/ca.key" "$dir"/agent/*.key "$dir"/operator/*.key "$dir"/controller/*.key "$dir/audit/audit.key"; do
  check "$(basename "$(dirname "$key")")/$(basename "$key") is 0600" mode_is "$key" 600
done
check "certificates are 0644" bash -c "for f in '$dir'/ca.crt '$dir'/*/*.crt '$dir'/crl.pem; do [ \$(stat -c %a \"\$f\") = 644 ] || exit 1; done"
check "no temporary file is left behind" bash -c "! find '$dir' -name '*.XXXXXX' -o -name '*.csr.*' -o -name '*.crt.*' -o -name '*.key.*' | grep -q ."

# --- a real mutual-TLS handshake ---------------------------------------------
# s_server as the controller (client certificate required, CRL checked) and
# s_client as an agent. `GET /` gets "HTTP/1.0 200 ok" only through a
# completed handshake.
handshake() {
  local cert=$1 key=$2
  : >"$tmp/server.out"
  timeout 30 openssl s_server -accept 127.0.0.1:0 -naccept 1 -www -tls1_3 \
    -cert "$dir/controller/ctl1.crt" -key "$dir/controller/ctl1.key" -CAfile "$dir/ca.crt" \
    -Verify 2 -verify_return_error -crl_check -CRL "$dir/crl.pem" </dev/null >"$tmp/server.out" 2>&1 &
  server_pid=$!
  local port=""
  for _ in $(seq 100); do
    port=$(grep -o 'ACCEPT 127.0.0.1:[0-9]*' "$tmp/server.out" | cut -d: -f2)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "s_server did not start"; return 1; }
  printf 'GET / HTTP/1.0\r\n\r\n' |
    timeout 20 openssl s_client -connect "127.0.0.1:$port" -cert "$cert" -key "$key" -CAfile "$dir/ca.crt" \
      -verify_return_error -verify_hostname ctl1 -quiet 2>&1 | grep -q '^HTTP/1.0 200 ok'
  local rc=$?
  kill "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_pid=""
  return $rc
}
check "mTLS: a valid agent completes a handshake with the controller" \
  handshake "$dir/agent/bastion1.crt" "$dir/agent/bastion1.key"
check "mTLS: a valid operator completes a handshake" handshake "$dir/operator/alice.crt" "$dir/operator/alice.key"
if handshake "$dir/agent/bastion2.crt" "$dir/agent/bastion2.key" >/dev/null 2>&1; then
  fail "mTLS: a revoked agent is refused"
else
  pass "mTLS: a revoked agent is refused"
fi
# The etcd store's own CA: members are servers and peers, controllers clients.
etcd=$tmp/etcd
bash "$pki" init "$etcd" >/dev/null
check "etcd-member issues a member certificate" bash "$pki" etcd-member "$etcd" etcd1 --ip 10.0.0.31
crt=$etcd/etcd-member/etcd1.crt
check "the member certificate verifies as a TLS server" openssl verify -CAfile "$etcd/ca.crt" -purpose sslserver "$crt"
check "... and as a TLS client (to its peers)" openssl verify -CAfile "$etcd/ca.crt" -purpose sslclient "$crt"
check "the member SANs: its name and --ip" bash -c "openssl x509 -in '$crt' -noout -ext subjectAltName | grep -q 'DNS:etcd1, IP Address:10.0.0.31'"
check "etcd-client issues a controller's client certificate" bash "$pki" etcd-client "$etcd" controller1
crt=$etcd/etcd-client/controller1.crt
check "the etcd client certificate verifies as a TLS client" openssl verify -CAfile "$etcd/ca.crt" -purpose sslclient "$crt"
refuse "the etcd client certificate is no TLS server certificate" 2 "" openssl verify -CAfile "$etcd/ca.crt" -purpose sslserver "$crt"
refuse "an etcd member of the etcd CA is not of the fleet's CA" 2 "" openssl verify -CAfile "$dir/ca.crt" "$etcd/etcd-member/etcd1.crt"

other=$tmp/other
bash "$pki" init "$other" >/dev/null && bash "$pki" agent "$other" bastion1 >/dev/null
if handshake "$other/agent/bastion1.crt" "$other/agent/bastion1.key" >/dev/null 2>&1; then
  fail "mTLS: an agent of another CA is refused"
else
  pass "mTLS: an agent of another CA is refused"
fi

echo
if [ $failures -gt 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
