#!/bin/bash
# Side-by-side benchmark of knockd and sesame-agent on one veth pair.
#
#   bench/compare/run.sh [-o RESULTS_DIR] [-s SUBJECTS] SCENARIO...
#
# SCENARIO: latency | flood | memory | interleaved | floodrandom | sweep |
#           halfknock | hostile (sweep, halfknock, floodrandom) | all
# -s: comma list of knockd, sesame, sesame-strict (sesame with ResetMode =
#     strict) (default: knockd, plus sesame when $SESAME_AGENT is built).
#     All selected daemons run at the same time, capturing on the same
#     interface, each with its own copy of the same doors.
# -o: where raw results and tables go (default /tmp/sesame-bench.DATE).
#
# Builds nothing: build knockgen, knocklat and pcap_stats_preload (and
# sesame-agent) first, in $BUILD_DIR (default <repo>/build-bench).
# Environment: BUILD_DIR, SESAME_AGENT, KNOCKD, KEEP_WORK=1 (keep the temp
# dir), NICE=-10 (run daemons and senders at that niceness, and give this
# session's scheduler autogroup the same, to shield the figures from
# unrelated load on a shared machine; default 0), GW_FIREWALL=1 (the
# daemons' namespace drops incoming TCP/UDP in nftables' input hook, as a
# knock host's firewall does, instead of answering each with a RST or an ICMP
# error; capture sees the packets either way), and each scenario's knobs
# (see scenarios/*.sh).
#
# Creates two network namespaces and a veth pair between them, and removes
# them, the daemons it started and its temp dir on every exit path. Must run
# as root. Nothing is sent outside the namespaces.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$REPO/build-bench}
KNOCKGEN=$BUILD_DIR/bench/tools/knockgen
KNOCKLAT=$BUILD_DIR/bench/tools/knocklat
PCAP_SHIM=$BUILD_DIR/bench/tools/libpcap_stats_preload.so
SESAME_AGENT=${SESAME_AGENT:-$BUILD_DIR/agent/sesame-agent}
KNOCKD=${KNOCKD:-/usr/sbin/knockd}
PROCSTAT=$HERE/procstat.py
NICE=${NICE:-0}

source "$HERE/lib/netns.sh"
source "$HERE/lib/subjects.sh"
# shellcheck source=/dev/null
for f in "$HERE"/scenarios/*.sh; do source "$f"; done

usage() {
  sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-2}"
}

now() { date +%s.%N; }

# percent PART WHOLE
percent() {
  awk -v p="$1" -v w="$2" 'BEGIN { if (w > 0) printf "%.1f\n", 100 * p / w; else print "-" }'
}

# Appends a command line, shell-quoted, to OUT/commands.txt.
note_command() {
  local out=$1
  shift
  local word line=""
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then line+="$word "; else line+="$(printf '%q' "$word") "; fi
  done
  echo "${line% }" >>"$out/commands.txt"
}

# Runs a long command (at niceness $NICE) in the background and waits for
# it, so that a signal reaches the trap at once (bash defers traps until a
# foreground child ends) and cleanup can stop the command by its PID.
CHILD_PID=
run_child() {
  nice -n "$NICE" "$@" &
  CHILD_PID=$!
  wait "$CHILD_PID"
  local rc=$?
  CHILD_PID=
  return $rc
}

SAMPLER_PID=
SAMPLER_STOP=
# start_sampler CSV INTERVAL NAME=PID...
start_sampler() {
  local csv=$1 interval=$2
  shift 2
  SAMPLER_STOP=$WORK/sampler.stop.$RANDOM
  /usr/bin/python3 "$PROCSTAT" sample --out "$csv" --interval "$interval" --stop-file "$SAMPLER_STOP" \
    --max-seconds 900 "$@" &
  SAMPLER_PID=$!
}
stop_sampler() {
  [ -n "$SAMPLER_PID" ] || return 0
  touch "$SAMPLER_STOP"
  wait "$SAMPLER_PID" 2>/dev/null
  SAMPLER_PID=
}

# Waits until no running subject used CPU for a whole second (at most $1 s).
wait_drained() {
  local limit=$1 before after s
  for _ in $(seq "$limit"); do
    before=0
    for s in "${RUNNING_SUBJECTS[@]}"; do before=$(awk -v a="$before" -v b="$(subject_cpu_s "$s")" 'BEGIN { print a + b }'); done
    sleep 1
    after=0
    for s in "${RUNNING_SUBJECTS[@]}"; do after=$(awk -v a="$after" -v b="$(subject_cpu_s "$s")" 'BEGIN { print a + b }'); done
    awk -v a="$before" -v b="$after" 'BEGIN { exit !(b - a < 0.02) }' && return 0
  done
  echo "warning: daemons still busy after $limit s" >&2
}

# With autogroup scheduling, niceness only ranks processes of one session
# against each other; the session's group competes with other sessions by
# its own nice value. Restored on exit.
AUTOGROUP_NICE_BEFORE=
raise_autogroup() {
  [ "$NICE" != 0 ] && [ -w /proc/self/autogroup ] || return 0
  AUTOGROUP_NICE_BEFORE=$(sed -n 's/.* nice \(-\{0,1\}[0-9]*\)$/\1/p' /proc/self/autogroup)
  echo "$NICE" >/proc/self/autogroup 2>/dev/null || AUTOGROUP_NICE_BEFORE=
}
restore_autogroup() {
  [ -n "$AUTOGROUP_NICE_BEFORE" ] && echo "$AUTOGROUP_NICE_BEFORE" >/proc/self/autogroup 2>/dev/null
  AUTOGROUP_NICE_BEFORE=
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$CHILD_PID" ]; then
    kill -TERM "$CHILD_PID" 2>/dev/null
    wait "$CHILD_PID" 2>/dev/null
  fi
  stop_sampler
  subjects_stop_all
  netns_down
  restore_autogroup
  if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
  fi
  exit "$rc"
}

write_meta() {
  {
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
    echo "git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null) $(git -C "$REPO" status --porcelain 2>/dev/null | grep -q . && echo '(dirty tree)')"
    echo "subjects: ${SUBJECTS[*]}"
    echo "knockd: $KNOCKD ($(dpkg-query -W -f='${Version}' knockd 2>/dev/null))"
    echo "sesame-agent: $SESAME_AGENT"
    echo "tcpreplay: $(tcpreplay --version 2>&1 | head -1)"
    echo "niceness of daemons and senders: $NICE (session autogroup: $(cat /proc/self/autogroup 2>/dev/null))"
    echo "daemons' side drops TCP/UDP in its input hook (GW_FIREWALL): ${GW_FIREWALL:-0}"
    echo "door: sequence=$SEQUENCE seq_timeout=$SEQ_TIMEOUT tcpflags=syn command=/usr/bin/touch DIR/doors/%IP%"
  } >"$RESULTS/meta.txt"
}

main() {
  local subjects_arg=""
  RESULTS=/tmp/sesame-bench.$(date +%Y%m%d-%H%M%S)
  while getopts "o:s:h" opt; do
    case $opt in
      o) RESULTS=$OPTARG ;;
      s) subjects_arg=$OPTARG ;;
      h) usage 0 ;;
      *) usage ;;
    esac
  done
  shift $((OPTIND - 1))
  [ $# -ge 1 ] || usage
  local -a scenarios=()
  for arg in "$@"; do
    case $arg in
      all) scenarios+=(latency interleaved flood memory floodrandom sweep halfknock) ;;
      hostile) scenarios+=(sweep halfknock floodrandom) ;;
      latency | flood | memory | interleaved | floodrandom | sweep | halfknock) scenarios+=("$arg") ;;
      *) echo "unknown scenario '$arg'" >&2; usage ;;
    esac
  done

  [[ $NICE =~ ^-?[0-9]+$ ]] || { echo "NICE must be an integer" >&2; exit 2; }
  [ "$(id -u)" = 0 ] || { echo "run.sh must run as root (network namespaces, AF_PACKET)" >&2; exit 1; }
  local tool
  for tool in "$KNOCKGEN" "$KNOCKLAT" "$PCAP_SHIM"; do
    [ -e "$tool" ] || { echo "missing $tool: cmake --build $BUILD_DIR --target knockgen knocklat pcap_stats_preload" >&2; exit 1; }
  done
  for tool in tcpreplay ip /usr/bin/python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
  done

  SUBJECTS=()
  if [ -n "$subjects_arg" ]; then
    IFS=, read -r -a SUBJECTS <<<"$subjects_arg"
  else
    SUBJECTS=(knockd)
    subject_available sesame && SUBJECTS+=(sesame)
  fi
  local s
  for s in "${SUBJECTS[@]}"; do
    subject_available "$s" || { echo "subject '$s' is not available (knockd: $KNOCKD, sesame: $SESAME_AGENT)" >&2; exit 1; }
  done

  mkdir -p "$RESULTS" || exit 1
  WORK=$(mktemp -d /tmp/sesame-bench-work.XXXXXX) || exit 1
  trap cleanup EXIT
  trap 'echo "run.sh: interrupted, cleaning up" >&2; exit 130' INT
  trap 'echo "run.sh: terminated, cleaning up" >&2; exit 143' TERM
  raise_autogroup
  netns_up || { echo "could not create the namespaces and veth pair" >&2; exit 1; }
  write_meta
  echo "results: $RESULTS   subjects: ${SUBJECTS[*]}"

  local failed=0 scenario
  for scenario in "${scenarios[@]}"; do
    mkdir -p "$RESULTS/$scenario"
    echo
    echo "== $scenario ($(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg), nice $NICE)"
    echo "load before: $(cat /proc/loadavg)" >"$RESULTS/$scenario/load.txt"
    if ! "scenario_$scenario" "$RESULTS/$scenario"; then
      echo "scenario $scenario failed" >&2
      failed=1
      subjects_stop_all
    fi
    echo "load after: $(cat /proc/loadavg)" >>"$RESULTS/$scenario/load.txt"
    if [ -f "$RESULTS/$scenario/table.txt" ]; then
      { echo "== $scenario"; cat "$RESULTS/$scenario/table.txt"; echo; } >>"$RESULTS/summary.txt"
    fi
  done
  return $failed
}

main "$@"
