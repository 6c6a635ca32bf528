# (a) Knock to door open: LATENCY_TRIALS sources (198.19.201.1 upward) each
# knock the sequence once; knocklat times the last knock until each subject's
# command has created its file; then, for scale, the time this machine takes
# to spawn that command with no daemon involved. Sourced by run.sh.

LATENCY_TRIALS=${LATENCY_TRIALS:-200}

scenario_latency() {
  local out=$1 s
  subjects_start "$WORK/latency" "$out" || return 1
  local -a watches=()
  for s in "${RUNNING_SUBJECTS[@]}"; do watches+=(--watch "$s=${SUBJECT_DIR[$s]}/doors"); done
  local -a cmd=("$KNOCKLAT" -i "$CL_IF" --dst "$GW_IP" --dst-mac "$GW_MAC" --sequence "$SEQUENCE"
    --src-base 198.19.201.1 --trials "$LATENCY_TRIALS" --gap-ms 2 --pause-ms 20 --timeout-ms 1000
    --max-seconds 300 "${watches[@]}" --raw-out "$out/trials.csv")
  note_command "$out" "${cmd[@]}"
  run_child ip netns exec "$NS_CL" "${cmd[@]}" >"$out/table.txt"
  local rc=$?
  subjects_stop_all
  # The floor under every figure above: starting and reaping the command.
  mkdir -p "$WORK/latency/spawn"
  {
    echo "door command alone on this machine (no daemon):"
    nice -n "$NICE" /usr/bin/python3 "$HERE/spawn_baseline.py" --count "$LATENCY_TRIALS" "$WORK/latency/spawn"
  } >>"$out/table.txt"
  cat "$out/table.txt"
  return "$rc"
}
