# (f) Half-knocks: the plain three doors (PLAIN_DOORS, seq_timeout = 3).
# HALFKNOCK_SOURCES spoofed sources (10.0.0.0 upward) each send the first two
# knocks of door1, back to back, HALFKNOCK_PPS packets per second; then
# HALFKNOCK_KNOCKERS real knockers (198.19.205.1 upward) knock door1
# correctly, one after another (HALFKNOCK_GAP_MS between a knocker's knocks).
# Then the recall curve: for each rate of HALFKNOCK_CURVE_PPS, the same
# flood for HALFKNOCK_CURVE_SECONDS with HALFKNOCK_CURVE_KNOCKERS real
# knockers spread through it. Every run on freshly started daemons. knockgen
# sends live, paced (tcpreplay keeping a file's timing managed only about
# 17,000 packets/s here, 110,000 with -T gtod; knockgen reaches 290,000 and,
# when it falls behind, sends late frames at once, in order); sent_pps is
# the rate the flood actually went out at. Counts the real knockers let in.
# Sourced by run.sh.

HALFKNOCK_SOURCES=${HALFKNOCK_SOURCES:-150000}
HALFKNOCK_PPS=${HALFKNOCK_PPS:-136000}
HALFKNOCK_KNOCKERS=${HALFKNOCK_KNOCKERS:-20}
HALFKNOCK_GAP_MS=${HALFKNOCK_GAP_MS:-10}
HALFKNOCK_CURVE_PPS=${HALFKNOCK_CURVE_PPS:-"20000 70000 150000 300000"}
HALFKNOCK_CURVE_SECONDS=${HALFKNOCK_CURVE_SECONDS:-4}
HALFKNOCK_CURVE_KNOCKERS=${HALFKNOCK_CURVE_KNOCKERS:-100}

# halfknock_run TABLE OUT LABEL KNOCKGEN_ARGS...: starts the daemons, sends
# the flood and the knocks, counts who of OUT/knockers.txt got in; appends
# one line per subject to TABLE (and prints it).
halfknock_run() {
  local table=$1 out=$2 label=$3 s
  shift 3
  mkdir -p "$out"
  subjects_start "$WORK/halfknock-$label" "$out" || return 1
  local -a names=("${RUNNING_SUBJECTS[@]}")
  local -a gen=("$KNOCKGEN" halfknock -i "$CL_IF" --dst "$GW_IP" --dst-mac "$GW_MAC"
    --sequence "${PLAIN_DOORS[0]#*=}" --knocks 2 --src-base 10.0.0.0 --knocker-base 198.19.205.1
    --gap-ms "$HALFKNOCK_GAP_MS" --knockers-out "$out/knockers.txt" --max-seconds 120 "$@")
  note_command "$out" "${gen[@]}"
  run_child ip netns exec "$NS_CL" "${gen[@]}" >"$out/knockgen.txt" 2>&1 || { subjects_stop_all; return 1; }
  wait_drained 60
  wait_opened "$out/knockers.txt" 3
  local want
  want=$(grep -c . "$out/knockers.txt")
  local -A opened=()
  for s in "${names[@]}"; do opened[$s]=$(count_opened "$s" "$out/knockers.txt"); done
  subjects_stop_all
  local rate
  rate=$(sed -n 's/.*: \([0-9]*\) flood pps.*/\1/p' "$out/knockgen.txt" | head -n 1)
  for s in "${names[@]}"; do
    read -r recv drop < <(pcap_counters "$s")
    printf '%-12s %9s %-14s %8s %10s %10s %s\n' "$label" "${rate%.*}" "$s" "${opened[$s]}/$want" "$recv" "$drop" \
      "$(matcher_counters "$s")" | tee -a "$table"
  done
}

scenario_halfknock() {
  local out=$1 pps
  local DOORS_CONFIG=plain_doors_config SEQUENCE=${PLAIN_DOORS[0]#*=}
  printf '%-12s %9s %-14s %8s %10s %10s %s\n' case sent_pps subject opened pcap_recv pcap_drop counters |
    tee "$out/table.txt"
  halfknock_run "$out/table.txt" "$out/then-knock" then-knock --sources "$HALFKNOCK_SOURCES" \
    --pps "$HALFKNOCK_PPS" --knockers "$HALFKNOCK_KNOCKERS" --knockers-when after || return 1
  for pps in $HALFKNOCK_CURVE_PPS; do
    halfknock_run "$out/table.txt" "$out/during-$pps" "during-$pps" \
      --sources $((pps * HALFKNOCK_CURVE_SECONDS / 2)) --pps "$pps" --knockers "$HALFKNOCK_CURVE_KNOCKERS" \
      --knockers-when during || return 1
  done
}
