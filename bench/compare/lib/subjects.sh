# The daemons under test ("subjects"), each started by PID in $NS_GW on
# $GW_IF with its own work directory:
#
#   DIR/<name>.conf   its configuration: the same door for every subject
#   DIR/doors/        where its start command creates a file named %IP%
#   DIR/daemon.out    its stdout and stderr
#   DIR/daemon.log    its LogFile
#   DIR/pcap_stats    libpcap's counters at exit (the LD_PRELOAD shim)
#
# Every subject runs the same command, `/usr/bin/touch DIR/doors/%IP%`: no
# shell needed (sesame never uses one), and its effect is a file that
# inotify sees the moment it appears. Sourced by run.sh.

# The door every subject serves. Knock-shaped = TCP with SYN (knockd's
# tcpflags = syn; sesame reads the same line).
SEQUENCE=7000:tcp,8000:tcp,9000:tcp
# shellcheck disable=SC2034  # used by the scenarios
FIRST_PORT=7000:tcp
SEQ_TIMEOUT=15

declare -A SUBJECT_PID=() SUBJECT_DIR=() SUBJECT_OUT=()
RUNNING_SUBJECTS=()

# The doors' sections of the config; $1 = the subject's work dir. A scenario
# serving other doors sets DOORS_CONFIG to its own function (as a local, so
# the next scenario gets the default back) and SEQUENCE to the door the probe
# knocks; every door's start command must touch DIR/doors/%IP%.
DOORS_CONFIG=bench_door_config
bench_door_config() {
  cat <<EOF
[bench]
    sequence      = $SEQUENCE
    seq_timeout   = $SEQ_TIMEOUT
    tcpflags      = syn
    start_command = /usr/bin/touch $1/doors/%IP%
EOF
}

# A plain knockd.conf's three static doors (no sesame keys), for the hostile
# scenarios (sweep, halfknock): their ports ascend within 7000..7400, one
# door after the other, so an ascending sweep passes each door's knocks in
# order, door by door. PLAIN_DOORS_INTERLEAVED: the same ports dealt out
# round-robin, so the doors' knocks interleave (the sweep scenario runs
# both). Each door also touches DIR/doors/%IP%.NAME, to tell which opened.
PLAIN_DOORS_SEQUENTIAL=("door1=7010:tcp,7050:udp,7100:tcp" "door2=7150,7200,7250" "door3=7300:udp,7350:udp,7390")
PLAIN_DOORS_INTERLEAVED=("door1=7010:tcp,7150:udp,7300:tcp" "door2=7050,7200,7350" "door3=7100:udp,7250:udp,7390")
PLAIN_DOORS=("${PLAIN_DOORS_SEQUENTIAL[@]}")
PLAIN_SEQ_TIMEOUT=3
plain_doors_config() {
  local door
  for door in "${PLAIN_DOORS[@]}"; do
    cat <<EOF
[${door%%=*}]
    sequence      = ${door#*=}
    seq_timeout   = $PLAIN_SEQ_TIMEOUT
    tcpflags      = syn
    start_command = /usr/bin/touch $1/doors/%IP% $1/doors/%IP%.${door%%=*}

EOF
  done
}

# count_doors NAME ADDRESS: how many doors NAME opened for ADDRESS.
count_doors() {
  local n=0 f
  for f in "${SUBJECT_DIR[$1]}/doors/$2".*; do [ -e "$f" ] && n=$((n + 1)); done
  echo $n
}

# sesame's matcher counters (its "stats matcher:" log line at exit), or "-".
matcher_counters() {
  local line
  line=$(grep -h "stats matcher:" "${SUBJECT_DIR[$1]}/daemon.log" 2>/dev/null | tail -n 1)
  [ -n "$line" ] && echo "${line#*stats matcher: }" || echo "-"
}

# knockd.conf text shared by all subjects; $1 = the subject's work dir, $2 =
# its name. sesame-strict is sesame with one more line, ResetMode = strict
# (its default is compat for a knockd.conf); knockd never sees that line.
door_config() {
  echo "[options]"
  echo "    LogFile = $1/daemon.log"
  echo "    PidFile = $1/daemon.pid"
  [ "$2" = sesame-strict ] && echo "    ResetMode = strict"
  echo
  "$DOORS_CONFIG" "$1"
}

# Prints the daemon's argv, one word a line; $1 = name, $2 = work dir.
subject_argv() {
  case "$1" in
    knockd) printf '%s\n' "$KNOCKD" -i "$GW_IF" -c "$2/knockd.conf" ;;
    sesame | sesame-strict) printf '%s\n' "$SESAME_AGENT" -i "$GW_IF" -c "$2/$1.conf" --state-dir "$2/state" ;;
    *) return 1 ;;
  esac
}

subject_available() {
  case "$1" in
    knockd) [ -x "$KNOCKD" ] ;;
    sesame | sesame-strict) [ -x "$SESAME_AGENT" ] ;;
    *) return 1 ;;
  esac
}

# subject_start NAME DIR OUT: writes the config and starts the daemon in the
# foreground (in the background of this shell), verbose and debug off. When
# it stops, its config, output and counters are copied to OUT.
subject_start() {
  local name=$1 dir=$2
  SUBJECT_OUT[$name]=$3
  mkdir -p "$dir/doors" "$dir/state" || return 1
  door_config "$dir" "$name" >"$dir/$name.conf"
  local -a argv
  mapfile -t argv < <(subject_argv "$name" "$dir") || return 1
  printf '%q ' "${argv[@]}" >"$dir/command.txt"
  # nice, ip netns exec and env all exec: $! is the daemon's own PID.
  nice -n "$NICE" ip netns exec "$NS_GW" env LD_PRELOAD="$PCAP_SHIM" SX_PCAP_STATS_OUT="$dir/pcap_stats" \
    "${argv[@]}" >"$dir/daemon.out" 2>&1 </dev/null &
  SUBJECT_PID[$name]=$!
  SUBJECT_DIR[$name]=$dir
  RUNNING_SUBJECTS+=("$name")
  sleep 0.3
  if ! kill -0 "${SUBJECT_PID[$name]}" 2>/dev/null; then
    echo "error: $name exited at start-up; its output:" >&2
    sed 's/^/  /' "$dir/daemon.out" >&2
    subject_forget "$name"
    return 1
  fi
}

subject_forget() {
  local name=$1 kept=() s
  for s in "${RUNNING_SUBJECTS[@]}"; do [ "$s" != "$name" ] && kept+=("$s"); done
  RUNNING_SUBJECTS=("${kept[@]}")
  unset "SUBJECT_PID[$name]"
}

# subject_stop NAME: asks for statistics (sesame logs them on SIGUSR1), then
# SIGTERM, then SIGKILL if still running after 10 s.
subject_stop() {
  local name=$1 pid=${SUBJECT_PID[$1]:-}
  [ -n "$pid" ] || return 0
  if [[ $name == sesame* ]] && kill -0 "$pid" 2>/dev/null; then
    kill -USR1 "$pid" 2>/dev/null
    sleep 0.3
  fi
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "warning: $name (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  subject_forget "$name"
  subject_collect "$name"
}

# Keeps what explains the figures: config, command line, output, counters,
# and the log (its last 2,000 lines when it is long: knockd logs every stage).
subject_collect() {
  local name=$1 dir=${SUBJECT_DIR[$1]} out=${SUBJECT_OUT[$1]:-}
  [ -n "$out" ] || return 0
  mkdir -p "$out" &&
    cp "$dir/$name.conf" "$dir/command.txt" "$dir/daemon.out" "$out/" 2>/dev/null
  [ -f "$dir/pcap_stats" ] && cp "$dir/pcap_stats" "$out/"
  if [ -f "$dir/daemon.log" ]; then
    echo "$(wc -l <"$dir/daemon.log") lines" >"$out/daemon.log.lines"
    tail -n 2000 "$dir/daemon.log" >"$out/daemon.log.tail"
  fi
}

# "frames drops" as the daemon itself reports them at exit, or "- -" when it
# reports nothing (knockd). sesame logs "stats IFACE: frames=N kernel_drops=M".
self_counters() {
  local log=${SUBJECT_DIR[$1]}/daemon.log
  local line
  line=$(grep -h "stats $GW_IF: frames=" "$log" 2>/dev/null | tail -n 1)
  if [ -n "$line" ]; then
    echo "$line" | sed -n 's/.*frames=\([0-9]*\) kernel_drops=\([0-9]*\).*/\1 \2/p'
  else
    echo "- -"
  fi
}

subjects_stop_all() {
  local s
  for s in "${RUNNING_SUBJECTS[@]}"; do subject_stop "$s"; done
}

# subjects_start WORK_DIR OUT_DIR: starts every selected subject under
# WORK_DIR/<name> (results to OUT_DIR/<name>), then waits until each opens
# its door for a probe.
subjects_start() {
  local base=$1 out=$2 s
  for s in "${SUBJECTS[@]}"; do
    subject_start "$s" "$base/$s" "$out/$s" || return 1
  done
  probe_subjects
}

# A fresh probe source each time: 198.19.(199 - n/250).(n%250 + 1).
PROBE_COUNT=0
next_probe_source() {
  PROBE_COUNT=$((PROBE_COUNT + 1))
  echo "198.19.$((199 - PROBE_COUNT / 250)).$((PROBE_COUNT % 250 + 1))"
}

# Knocks from a new source until every running subject opened for it (at
# most 20 tries, 1 s each). Also warms the daemons up.
probe_subjects() {
  local src s ok
  for _ in $(seq 20); do
    src=$(next_probe_source)
    send_sequence "$src" 2 >/dev/null || return 1
    for _ in $(seq 20); do
      ok=1
      for s in "${RUNNING_SUBJECTS[@]}"; do
        [ -e "${SUBJECT_DIR[$s]}/doors/$src" ] || ok=0
      done
      [ $ok = 1 ] && return 0
      sleep 0.05
    done
  done
  for s in "${RUNNING_SUBJECTS[@]}"; do
    [ -e "${SUBJECT_DIR[$s]}/doors/$src" ] || echo "error: $s never opened for a probe knock" >&2
  done
  return 1
}

# send_sequence SRC GAP_MS: one knocker, the door's sequence.
send_sequence() {
  in_cl "$KNOCKGEN" sequence -i "$CL_IF" --dst "$GW_IP" --dst-mac "$GW_MAC" \
    --src "$1" --sequence "$SEQUENCE" --gap-ms "$2" --max-seconds 10
}

# count_opened NAME LIST: how many addresses of LIST (one a line) NAME opened for.
count_opened() {
  local dir=${SUBJECT_DIR[$1]}/doors n=0 a
  while read -r a; do
    [ -n "$a" ] && [ -e "$dir/$a" ] && n=$((n + 1))
  done <"$2"
  echo $n
}

# wait_opened LIST TIMEOUT_S: until every running subject opened for all of
# LIST or the timeout passes.
wait_opened() {
  local want end s
  want=$(grep -c . "$1")
  end=$(($(date +%s) + $2))
  while [ "$(date +%s)" -lt "$end" ]; do
    local done_all=1
    for s in "${RUNNING_SUBJECTS[@]}"; do
      [ "$(count_opened "$s" "$1")" -ge "$want" ] || done_all=0
    done
    [ $done_all = 1 ] && return 0
    sleep 0.2
  done
  return 0
}

# "recv drop" from the shim's file (summed over capture handles), or "- -".
pcap_counters() {
  local file=${SUBJECT_DIR[$1]}/pcap_stats
  if [ -s "$file" ]; then
    awk '{for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] += kv[2] }}
         END { print v["recv"] + 0, v["drop"] + 0 }' "$file"
  else
    echo "- -"
  fi
}

# CPU seconds (user+system) of a running subject, from /proc.
subject_cpu_s() {
  awk -v tck="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); split($0, f, " "); printf "%.2f\n", (f[12] + f[13]) / tck }' \
    "/proc/${SUBJECT_PID[$1]}/stat" 2>/dev/null
}
