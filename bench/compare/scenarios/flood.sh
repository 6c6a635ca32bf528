# (b) Flood: FLOOD_COUNT knock-shaped packets to FLOOD_PORT (default the
# door's first port) from random sources in FLOOD_PREFIX, with FLOOD_KNOCKERS
# real knockers (198.19.200.1 upward) completing the sequence spread through
# it, written to a pcap and replayed with tcpreplay --topspeed (bounded by the
# file). Counts the real knockers let in, libpcap's drops and CPU, and CPU
# per packet received. `floodrandom` is the same flood to a random port and
# protocol per packet (FLOOD_PORT=random): packets that are no knock for any
# door, which sesame's capture (every TCP/UDP packet) still hands to the
# matcher. Sourced by run.sh.

FLOOD_COUNT=${FLOOD_COUNT:-1000000}
FLOOD_PORT=${FLOOD_PORT:-$FIRST_PORT}
FLOOD_KNOCKERS=${FLOOD_KNOCKERS:-100}
FLOOD_PREFIX=${FLOOD_PREFIX:-198.18.0.0/16}
FLOOD_DRAIN_MAX=${FLOOD_DRAIN_MAX:-60}

scenario_flood() {
  local out=$1 s pcap=$WORK/flood.pcap
  local -a gen=("$KNOCKGEN" flood -w "$pcap" --dst "$GW_IP" --dst-mac "$GW_MAC" --src-mac "$CL_MAC"
    --count "$FLOOD_COUNT" --port "$FLOOD_PORT" --random-prefix "$FLOOD_PREFIX"
    --knockers "$FLOOD_KNOCKERS" --src-base 198.19.200.1 --sequence "$SEQUENCE"
    --knockers-out "$out/knockers.txt")
  note_command "$out" "${gen[@]}"
  run_child "${gen[@]}" >"$out/knockgen.txt" || return 1

  subjects_start "$WORK/$(basename "$out")" "$out" || return 1
  local -a names=("${RUNNING_SUBJECTS[@]}") targets=()
  for s in "${names[@]}"; do targets+=("$s=${SUBJECT_PID[$s]}"); done
  # The link counters tell when the packets actually arrived: tcpreplay
  # spends a while loading the file before it sends, and freeing it after.
  start_sampler "$out/samples.csv" 0.25 --link "${SUBJECT_PID[${names[0]}]}:$GW_IF" \
    --link-out "$out/link.csv" "${targets[@]}"

  local -a replay=(tcpreplay -i "$CL_IF" --topspeed --preload-pcap "$pcap")
  note_command "$out" "${replay[@]}"
  local link_before t0 t1 t2
  link_before=$(gw_link_counters)
  t0=$(now)
  run_child ip netns exec "$NS_CL" "${replay[@]}" >"$out/tcpreplay.txt" 2>&1
  t1=$(now)
  wait_drained "$FLOOD_DRAIN_MAX"
  t2=$(now)
  stop_sampler
  echo "link rx_packets rx_dropped before: $link_before after: $(gw_link_counters)" >"$out/link.txt"

  local -A opened=()
  for s in "${names[@]}"; do opened[$s]=$(count_opened "$s" "$out/knockers.txt"); done
  subjects_stop_all
  {
    grep -E '^(Actual|Rated)' "$out/tcpreplay.txt" | sed 's/^/tcpreplay: /'
    awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "tcpreplay ran %.1f s (loading, then sending); the daemons went idle %.1f s after it\n", b - a, c - b }'
    printf '%-14s %8s %10s %10s %7s %12s %11s\n' subject opened pcap_recv pcap_drop drop% self_frames self_drops
    for s in "${names[@]}"; do
      read -r recv drop < <(pcap_counters "$s")
      read -r frames drops < <(self_counters "$s")
      printf '%-14s %8s %10s %10s %7s %12s %11s\n' "$s" "${opened[$s]}/$FLOOD_KNOCKERS" "$recv" "$drop" \
        "$(percent "$drop" "$recv")" "$frames" "$drops"
    done
    local first last
    read -r first last < <("$PROCSTAT" window "$out/link.csv")
    awk -v a="$first" -v b="$last" 'BEGIN { printf "packets arrived during %.2f s (0.25 s samples of the link counters)\n", b - a }'
    echo "CPU while packets arrived:"
    "$PROCSTAT" cpu "$out/samples.csv" --from "$first" --to "$last"
    echo "CPU from the first packet until idle:"
    "$PROCSTAT" cpu "$out/samples.csv" --from "$first" --to "$t2" | tee "$out/cpu.txt"
    echo "CPU per packet received (CPU from the first packet until idle / pcap_recv):"
    for s in "${names[@]}"; do
      read -r recv drop < <(pcap_counters "$s")
      awk -v s="$s" -v r="$recv" '$1 == s && r > 0 { printf "%-14s %8.3f us/packet\n", s, 1e6 * $2 / r }' "$out/cpu.txt"
    done
  } | tee "$out/table.txt"
}

scenario_floodrandom() {
  local FLOOD_PORT=random
  scenario_flood "$1"
}
