#!/usr/bin/env bash
# Runs the libFuzzer harnesses (build/fuzz/fuzz_*, built by `make fuzz` /
# `make fuzz-smoke`) and prints one summary line per harness.
#
#   scripts/fuzz.sh [--fresh] SECONDS [TARGET...]
#
#   SECONDS   how long each harness runs
#   TARGET    harness names (fuzz_engine, ...); default: every built one
#   --fresh   start from the committed corpus only (the scratch corpus is
#             emptied first): what `make fuzz-smoke` does, so `make test`
#             does not depend on earlier runs
#
# Each harness reads its committed seeds from test/fuzz/corpus/<name>/
# (never written to) and keeps the new inputs it finds in
# build/fuzz/corpus/<name>/, which later runs start from as well. Crash,
# leak, timeout and out-of-memory inputs go to build/fuzz/artifacts/<name>/;
# full logs to build/fuzz/logs/<name>.log. Exit status is non-zero when any
# harness failed (docs/FUZZING.md says what to do with the input).
#
# Environment: FUZZ_JOBS (harnesses run at once, default 1), FUZZ_BIN_DIR
# (where the harness binaries are, default build/fuzz),
# FUZZ_TMPDIR (scratch files of the WAL, JWT and journal harnesses; default
# /dev/shm when writable, as fsync on a real disk slows them fivefold),
# FUZZ_ARGS (extra libFuzzer flags).
set -uo pipefail
cd "$(dirname "$0")/.."

fresh=0
if [[ "${1:-}" == "--fresh" ]]; then
  fresh=1
  shift
fi
secs=${1:-}
if [[ ! "$secs" =~ ^[0-9]+$ ]] || ((secs < 1)); then
  echo "usage: scripts/fuzz.sh [--fresh] SECONDS [TARGET...]" >&2
  exit 2
fi
shift
targets=("$@")
bindir=${FUZZ_BIN_DIR:-build/fuzz}
if ((${#targets[@]} == 0)); then
  for b in "$bindir"/fuzz_*; do
    [[ -x "$b" ]] && targets+=("$(basename "$b")")
  done
fi
if ((${#targets[@]} == 0)); then
  echo "fuzz: no harnesses in build/fuzz (run make fuzz-smoke)" >&2
  exit 2
fi

if [[ -z "${FUZZ_TMPDIR:-}" && -d /dev/shm && -w /dev/shm ]]; then
  export FUZZ_TMPDIR=/dev/shm
fi
jobs=${FUZZ_JOBS:-1}

# Longest input each harness may be given: large enough for its format
# (several protocol messages, a few WAL records, an 8 KiB token), small
# enough to keep mutations focused.
max_len() {
  case "$1" in
    fuzz_engine) echo 16384 ;;
    fuzz_wal | fuzz_snapshot) echo 16384 ;;
    fuzz_jwt) echo 9000 ;;
    fuzz_config) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

# run_one NAME: runs the harness and writes build/fuzz/logs/NAME.summary
run_one() {
  local t=$1 name=${1#fuzz_}
  local bin=$bindir/$t seeds=test/fuzz/corpus/$name scratch=build/fuzz/corpus/$name
  local art=build/fuzz/artifacts/$name/ log=build/fuzz/logs/$t.log sum=build/fuzz/logs/$t.summary
  if [[ ! -x "$bin" ]]; then
    echo "$t: FAILED: $bin is missing (make fuzz-smoke builds it)" >"$sum"
    return
  fi
  ((fresh)) && rm -rf "$scratch"
  mkdir -p "$scratch" "$seeds" "$art"
  local dict=() before
  [[ -f test/fuzz/$name.dict ]] && dict=(-dict="test/fuzz/$name.dict")
  before=$(find "$art" -type f | wc -l)
  local start=$SECONDS
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2560 -max_len="$(max_len "$t")" \
    -print_final_stats=1 -artifact_prefix="$art" "${dict[@]}" ${FUZZ_ARGS:-} \
    "$scratch" "$seeds" >"$log" 2>&1
  local rc=$? took=$((SECONDS - start))
  local runs eps last cov ft corp
  runs=$(grep -a -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}')
  eps=$(grep -a -E '^stat::average_exec_per_sec:' "$log" | awk '{print $2}')
  last=$(grep -a -E '^#[0-9]+[[:space:]].*cov: ' "$log" | tail -n1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$last")
  local after crashes
  after=$(find "$art" -type f | wc -l)
  crashes=$((after - before))
  ((rc != 0 && crashes == 0)) && crashes=1
  local line
  line=$(printf '%-14s %9s runs %7s/s  cov %5s  ft %6s  corpus %5s  %3ss  crashes %s' \
    "$t" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$took" "$crashes")
  if ((rc != 0)); then
    local input
    input=$(grep -a -oE "Test unit written to .*" "$log" | tail -n1 | sed 's/Test unit written to //')
    line+=$'\n'"  FAILED (exit $rc): ${input:-see $log}"
    line+=$'\n'"$(grep -a -E 'check failed|^==[0-9]+==ERROR|SUMMARY|runtime error|^    #[0-9] ' "$log" | head -n 14 | sed 's/^/  /')"
    line+=$'\n'"  reproduce: $bin ${input:-INPUT}"
  fi
  echo "$line" >"$sum"
}

mkdir -p build/fuzz/logs
echo "fuzz: ${#targets[@]} harnesses, ${secs}s each, $jobs at a time$( ((fresh)) && echo ', committed corpus only')"
running=0
for t in "${targets[@]}"; do
  rm -f "build/fuzz/logs/$t.summary"
  run_one "$t" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n
    running=$((running - 1))
  fi
done
wait

status=0
for t in "${targets[@]}"; do
  s=build/fuzz/logs/$t.summary
  if [[ -f "$s" ]]; then
    cat "$s"
    grep -q FAILED "$s" && status=1
  else
    echo "$t: FAILED: no summary"
    status=1
  fi
done
if ((status)); then
  echo "fuzz: FAILED - save each failing input as test/fuzz/corpus/<target>/crash-<what> (docs/FUZZING.md)"
else
  echo "fuzz: ok"
fi
exit $status
