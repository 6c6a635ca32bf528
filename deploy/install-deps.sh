#!/usr/bin/env bash
# Installs every Debian 12 package sesame needs to build, test, benchmark and
# run its demo. Idempotent; run as root.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libpcap-dev libnftables-dev libgrpc++-dev libprotobuf-dev protobuf-compiler
  protobuf-compiler-grpc libabsl-dev libssl-dev libsqlite3-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # run and test: real firewalls, real capture, the real knockd to compare with
  iproute2 nftables iptables ufw tcpd knockd tcpdump tcpreplay openssl
  # the bastions' real sshd (it reads hosts.allow) and the demo's ssh client
  openssh-server openssh-client
  # the high-availability store: real etcd members in the tests and the demo
  etcd-server etcd-client
  # rollout: the roles are linted and run locally in the tests
  ansible ansible-lint
  # promtool: the shipped alert rules are checked and unit-tested
  prometheus
  # the packages are checked as Debian checks its own, and installed into a
  # booted Debian 12 (debootstrap, systemd-nspawn)
  lintian debootstrap systemd-container
  procps psmisc python3
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (it calls apt-get)" >&2
  exit 1
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# knockd's, prometheus' and openssh-server's packages must not start daemons
# of their own on this host (only their tools are used; the fleet bed runs
# its own sshd in each bastion's namespace).
for service in knockd prometheus ssh; do
  if systemctl is-active --quiet "$service" 2>/dev/null; then systemctl stop "$service"; fi
done
exit 0
