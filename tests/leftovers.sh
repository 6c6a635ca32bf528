#!/usr/bin/env bash
# What the test suite leaves behind (tests/run.sh runs it around ctest):
#
#   tests/leftovers.sh snapshot DIR   before the tests: what is there already
#   tests/leftovers.sh check DIR      after: fails, naming each one, if a
#                                     process, network namespace, mount or
#                                     /tmp entry appeared and is still there,
#                                     or a file under /etc changed (tests
#                                     never change the host's own /etc)
#
# A process counts when it was reparented to init (its test is gone) and is
# one of ours (sesame's daemons, etcd, python3 helpers, knock tools, sshd,
# or anything run from this tree or /tmp); other services the machine starts
# meanwhile do not.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
[ $# -eq 2 ] || { echo "usage: $0 snapshot|check DIR" >&2; exit 2; }
command=$1 dir=$2

orphans() {
  local pid ppid cmd
  for stat in /proc/[0-9]*/stat; do
    pid=${stat#/proc/}
    pid=${pid%/stat}
    ppid=$(awk '{ sub(/^.*\) /, ""); print $2 }' "$stat" 2>/dev/null) || continue
    [ "$ppid" = 1 ] || continue
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    [ -n "$cmd" ] || continue
    case $cmd in
      *sesame* | *etcd* | *python3* | *knock* | *sshd* | *"$repo"* | */tmp/*) echo "$pid $cmd" ;;
    esac
  done | sort
}
namespaces() { ip netns list 2>/dev/null | awk '{ print $1 }' | sort; }
# /run/netns itself is iproute2's mount point for named namespaces, made by
# the first `ip netns add` on a machine and meant to stay (the namespaces
# in it are checked above).
mounts() { awk '$5 != "/run/netns" { print $5 }' /proc/self/mountinfo | sort; }
tmp_entries() { find /tmp -mindepth 1 -maxdepth 1 ! -name 'systemd-private-*' -printf '%f\n' | sort; }

take() {
  mkdir -p "$1"
  touch "$1/mark"
  orphans >"$1/processes"
  namespaces >"$1/namespaces"
  mounts >"$1/mounts"
  tmp_entries >"$1/tmp"
}

case $command in
  snapshot) take "$dir" ;;
  check)
    after=$dir/after
    take "$after"
    left=0
    find /etc -xdev -newer "$dir/mark" ! -type d 2>/dev/null | sort >"$after/etc"
    : >"$dir/etc"
    for kind in processes namespaces mounts tmp etc; do
      new=$(comm -13 "$dir/$kind" "$after/$kind")
      if [ -n "$new" ]; then
        left=1
        echo "left behind by the tests ($kind):" >&2
        echo "$new" | sed 's/^/  /' >&2
      fi
    done
    [ $left -eq 0 ] || exit 1
    echo "nothing left behind: no process, network namespace, mount or /tmp entry of the tests, /etc untouched"
    ;;
  *) echo "usage: $0 snapshot|check DIR" >&2; exit 2 ;;
esac
