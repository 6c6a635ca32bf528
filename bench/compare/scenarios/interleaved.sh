# (d) Interleaved clients: INTERLEAVED_CLIENTS sources (198.19.202.1 upward)
# knock at the same time, round by round (all send knock 1, then all knock
# 2, ...), INTERLEAVED_GAP_MS between rounds. Counts who got in. Sourced by
# run.sh.

INTERLEAVED_CLIENTS=${INTERLEAVED_CLIENTS:-30}
INTERLEAVED_GAP_MS=${INTERLEAVED_GAP_MS:-20}

scenario_interleaved() {
  local out=$1 s
  subjects_start "$WORK/interleaved" "$out" || return 1
  local -a cmd=("$KNOCKGEN" clients -i "$CL_IF" --dst "$GW_IP" --dst-mac "$GW_MAC"
    --clients "$INTERLEAVED_CLIENTS" --src-base 198.19.202.1 --sequence "$SEQUENCE"
    --gap-ms "$INTERLEAVED_GAP_MS" --max-seconds 30 --knockers-out "$out/clients.txt")
  note_command "$out" "${cmd[@]}"
  run_child ip netns exec "$NS_CL" "${cmd[@]}" >"$out/knockgen.txt" || { subjects_stop_all; return 1; }
  wait_opened "$out/clients.txt" 5
  {
    printf '%-10s %8s\n' subject opened
    for s in "${RUNNING_SUBJECTS[@]}"; do
      printf '%-10s %8s\n' "$s" "$(count_opened "$s" "$out/clients.txt")/$INTERLEAVED_CLIENTS"
    done
  } | tee "$out/table.txt"
  subjects_stop_all
}
