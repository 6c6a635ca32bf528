# (c) Memory under spoofed sources: MEMORY_SOURCES distinct sources
# (198.18.0.0 upward) each send one first knock, MEMORY_RATE per second. RSS
# of each daemon sampled every second from /proc, before, during and after;
# then one real knocker checks the door still opens. Sourced by run.sh.

MEMORY_SOURCES=${MEMORY_SOURCES:-100000}
MEMORY_RATE=${MEMORY_RATE:-5000}
MEMORY_WARMUP=${MEMORY_WARMUP:-5}
MEMORY_COOLDOWN=${MEMORY_COOLDOWN:-10}

scenario_memory() {
  local out=$1 s
  subjects_start "$WORK/memory" "$out" || return 1
  local -a names=("${RUNNING_SUBJECTS[@]}") targets=()
  for s in "${names[@]}"; do targets+=("$s=${SUBJECT_PID[$s]}"); done
  start_sampler "$out/samples.csv" 1 "${targets[@]}"
  sleep "$MEMORY_WARMUP"

  local -a cmd=("$KNOCKGEN" spoof -i "$CL_IF" --dst "$GW_IP" --dst-mac "$GW_MAC"
    --sources "$MEMORY_SOURCES" --rate "$MEMORY_RATE" --src-base 198.18.0.0 --port "$FIRST_PORT"
    --max-seconds $((MEMORY_SOURCES / MEMORY_RATE + 30)))
  note_command "$out" "${cmd[@]}"
  local t0 t1
  t0=$(now)
  run_child ip netns exec "$NS_CL" "${cmd[@]}" >"$out/knockgen.txt" 2>&1
  t1=$(now)
  sleep "$MEMORY_COOLDOWN"

  # Does a real knock still get in after the flood of half-open sequences?
  local probe
  probe=$(next_probe_source)
  echo "$probe" >"$out/after.txt"
  send_sequence "$probe" 2 >/dev/null
  wait_opened "$out/after.txt" 3
  local -A after=()
  for s in "${names[@]}"; do after[$s]=$(count_opened "$s" "$out/after.txt"); done
  stop_sampler
  subjects_stop_all
  {
    sed 's/^/knockgen: /' "$out/knockgen.txt"
    echo "RSS (growth: least squares over the spoofing window):"
    "$PROCSTAT" memory "$out/samples.csv" --from "$t0" --to "$t1"
    printf '%-10s %10s %10s %7s %12s %11s %12s\n' subject pcap_recv pcap_drop drop% self_frames self_drops opens_after
    for s in "${names[@]}"; do
      read -r recv drop < <(pcap_counters "$s")
      read -r frames drops < <(self_counters "$s")
      printf '%-10s %10s %10s %7s %12s %11s %12s\n' "$s" "$recv" "$drop" "$(percent "$drop" "$recv")" \
        "$frames" "$drops" "$([ "${after[$s]}" = 1 ] && echo yes || echo no)"
    done
  } | tee "$out/table.txt"
}
