#!/usr/bin/env bash
# Prints the path of a Debian 12 root (debootstrap --variant=minbase) for the
# package test (nspawn_package_test.sh), making it first when this machine
# has none yet: systemd, Debian's openssh-server, nftables' tool and the
# runtime libraries the sesame packages depend on, so that they install with
# no network. Cached in $SESAME_NSPAWN_CACHE (default /var/cache/sesame-test),
# one per package list; concurrent callers wait for the one making it.
# tests/run.sh starts it beside the build, so the download overlaps it.
#
#   bash tests/deploy/debian_root.sh    # as root
set -euo pipefail

packages=(
  systemd systemd-sysv dbus iproute2 nftables procps openssh-server
  # the packages' Depends, and the libraries dpkg-shlibdeps finds in the
  # binaries (nspawn_package_test.sh's install fails, naming any missing)
  adduser openssl libabsl20220623 libc-ares2 libcap2 libgrpc++1.51 libgrpc29 libnftables1 libpcap0.8
  libprotobuf32 libre2-9 libsqlite3-0 libssl3 libstdc++6 libgcc-s1 zlib1g
)
include=$(printf '%s\n' "${packages[@]}" | sort -u | paste -sd, -)
cache=${SESAME_NSPAWN_CACHE:-/var/cache/sesame-test}
root=$cache/bookworm-$(echo "$include" | sha256sum | cut -c1-12)
mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9
if [ ! -d "$root" ]; then
  rm -rf "$cache"/partial.*  # a run killed while making one
  partial=$(mktemp -d "$cache/partial.XXXXXX")
  echo "debootstrap into $root (once per machine and package list)" >&2
  if ! debootstrap --variant=minbase --include="$include" bookworm "$partial" \
    "${SESAME_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$partial.log" 2>&1; then
    tail -n 30 "$partial.log" >&2
    rm -rf "$partial" "$partial.log"
    echo "debootstrap failed" >&2
    exit 1
  fi
  rm -f "$partial.log"
  : >"$partial/etc/machine-id"  # each boot makes its own
  mv "$partial" "$root"
fi
echo "$root"
