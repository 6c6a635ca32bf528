# (e) Sweep: the plain three doors (PLAIN_DOORS, seq_timeout = 3, no sesame
# keys); one source (198.19.204.1 upward, a new one each time) sends TCP then
# UDP to every port from SWEEP_FIRST to SWEEP_LAST in ascending order, as a
# sequential scanner does, at each rate of SWEEP_RATES packets per second
# (0: as fast as the sender goes), each on freshly started daemons; first
# with the doors one after the other (PLAIN_DOORS_SEQUENTIAL), then with
# their knocks interleaved (PLAIN_DOORS_INTERLEAVED). Counts the doors that
# opened for the sweep, and whether sesame reported it as a scanner.
# Sourced by run.sh.

SWEEP_FIRST=${SWEEP_FIRST:-7000}
SWEEP_LAST=${SWEEP_LAST:-7400}
SWEEP_RATES=${SWEEP_RATES:-"2000 20000 0"}
SWEEP_LAYOUTS=${SWEEP_LAYOUTS:-"sequential interleaved"}

# sweep_once TABLE OUT LAYOUT RATE SOURCE: one sweep on fresh daemons.
sweep_once() {
  local table=$1 out=$2 layout=$3 rate=$4 src=$5 s
  mkdir -p "$out"
  subjects_start "$WORK/$(basename "$out")" "$out" || return 1
  local -a names=("${RUNNING_SUBJECTS[@]}")
  local -a cmd=("$KNOCKGEN" sweep -i "$CL_IF" --dst "$GW_IP" --dst-mac "$GW_MAC" --src "$src"
    --first "$SWEEP_FIRST" --last "$SWEEP_LAST" --protocol both --rate "$rate" --max-seconds 60)
  note_command "$out" "${cmd[@]}"
  run_child ip netns exec "$NS_CL" "${cmd[@]}" >"$out/knockgen.txt" 2>&1 || { subjects_stop_all; return 1; }
  # Door commands run within milliseconds; knockd reads every 50 ms.
  sleep 2
  local -A doors=() flagged=()
  for s in "${names[@]}"; do
    doors[$s]=$(count_doors "$s" "$src")
    flagged[$s]=-
    if [[ $s == sesame* ]]; then
      grep -h "$src" "${SUBJECT_DIR[$s]}/daemon.log" >"$out/$s.source.log" 2>/dev/null
      grep -q "$src: knocks like a scanner" "$out/$s.source.log" && flagged[$s]=yes || flagged[$s]=no
    fi
  done
  subjects_stop_all
  local shown_rate=$rate/s
  [ "$rate" = 0 ] && shown_rate=max
  for s in "${names[@]}"; do
    printf '%-12s %-8s %-14s %12s %16s  %s\n' "$layout" "$shown_rate" "$s" "${doors[$s]}/${#PLAIN_DOORS[@]}" \
      "${flagged[$s]}" "$(matcher_counters "$s")" | tee -a "$table"
  done
  sed 's/^/  /' "$out/knockgen.txt" | tee -a "$table"
}

scenario_sweep() {
  local out=$1 layout rate n=0
  local DOORS_CONFIG=plain_doors_config
  printf '%-12s %-8s %-14s %12s %16s  %s\n' layout rate subject doors_opened reported_scanner counters |
    tee "$out/table.txt"
  for layout in $SWEEP_LAYOUTS; do
    local -a PLAIN_DOORS
    case $layout in
      sequential) PLAIN_DOORS=("${PLAIN_DOORS_SEQUENTIAL[@]}") ;;
      interleaved) PLAIN_DOORS=("${PLAIN_DOORS_INTERLEAVED[@]}") ;;
      *) echo "unknown SWEEP_LAYOUTS entry '$layout'" >&2; return 1 ;;
    esac
    local SEQUENCE=${PLAIN_DOORS[0]#*=}
    { echo "doors ($layout):"; printf '  %s\n' "${PLAIN_DOORS[@]}"; } >>"$out/doors.txt"
    for rate in $SWEEP_RATES; do
      n=$((n + 1))
      sweep_once "$out/table.txt" "$out/$layout-$rate" "$layout" "$rate" "198.19.204.$n" || return 1
    done
  done
}
