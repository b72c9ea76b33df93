#!/usr/bin/env bash
# Runs every test of `make test` and ends with one summary line
# "tests: N passed, M failed". Exit status is non-zero if anything failed.
#   stages: C unit tests (release, ASan/UBSan), integration tests against the
#   real daemon (release, ASan/UBSan), the code that crosses the snapshot
#   writer thread under ThreadSanitizer (a few unit suites and integration
#   files, below), JS unit tests when present.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/logs
passed=0
failed=0
status=0

# Check prints "NN%: Checks: N, Failures: F, Errors: E"
run_check() { # name command...
  local name=$1 log=build/logs/$1.log
  shift
  echo "== $name"
  CK_VERBOSITY=normal "$@" >"$log" 2>&1
  local rc=$?
  cat "$log" | grep -v '^Running suite' | tail -n 40
  local line
  line=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -n1)
  if [[ -n "$line" ]]; then
    local n f e
    n=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
    f=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$line")
    e=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
    passed=$((passed + n - f - e))
    failed=$((failed + f + e))
  fi
  if [[ $rc -ne 0 ]]; then
    status=1
    [[ -z "$line" ]] && failed=$((failed + 1))
    echo "!! $name failed (exit $rc); log: $log"
  fi
}

# node --test prints "# pass N" / "# fail N"
run_node() { # name env... -- args
  local name=$1
  shift
  local log=build/logs/$name.log
  echo "== $name"
  env "$@" >"$log" 2>&1
  local rc=$?
  grep -E '^not ok|^# (tests|pass|fail|skipped)' "$log"
  local p f
  p=$(grep -E '^# pass ' "$log" | tail -n1 | awk '{print $3}')
  f=$(grep -E '^# fail ' "$log" | tail -n1 | awk '{print $3}')
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
  if [[ $rc -ne 0 ]]; then
    status=1
    [[ -z "$f" || "$f" == 0 ]] && failed=$((failed + 1))
    echo "!! $name failed (exit $rc); log: $log"
    grep -B2 -A30 '^not ok' "$log" | head -n 120
  fi
}

run_check unit-release build/release/unit-tests
run_check unit-asan build/asan/unit-tests

# ThreadSanitizer (build/tsan): only what crosses threads - the snapshot
# writer thread (src/snapshot_writer.c) against the event loop, the log
# texts the loop pins for it (mx_oplog_pin), the WAL descriptor it syncs
# (src/alloc.c's per-thread block cache is off in this build, alloc.h, so
# TSan sees every allocation and free behind it). The unit
# suites that drive them: recovery (storage_wal.c with the real thread,
# rooms acting while a job is in flight), room (gathered snapshots of a
# pinned log), oplog (pin/unpin), wal (the thread's sync handle and
# atomic writes), alloc. A report makes the process exit 66 at once
# (halt_on_error) and is also written to build/logs/tsan/report.PID, which
# counts as a failure below even if a test did not notice the exit. No
# suppressions: lws 4.1.6, libuv and OpenSSL (Debian 12) gave no report; a
# third-party one would need a written reason here, ours never get one.
# Measured: 35 s [33..60] for this stage (3 runs, load 4.5-5.4 on 2 cores),
# plus 11-27 s to build build/tsan.
TSAN_LOGS=$PWD/build/logs/tsan
rm -rf "$TSAN_LOGS" && mkdir -p "$TSAN_LOGS"
export TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:log_path=$TSAN_LOGS/report"
# GCC 12's TSan cannot place its shadow memory when the kernel randomises
# mmap with more bits than 28 (vm.mmap_rnd_bits is 32 on some newer
# kernels): every process dies with "unexpected memory mapping". Then this
# stage runs without address randomisation (setarch -R; Debian 12's own
# kernel has 28 and needs nothing).
NO_ASLR=()
if ! TSAN_OPTIONS= CK_RUN_SUITE=alloc build/tsan/unit-tests >/dev/null 2>&1; then
  NO_ASLR=(setarch "$(uname -m)" -R)
  echo "(TSan did not start with address randomisation: its stage runs under ${NO_ASLR[*]})"
fi
for suite in recovery room oplog wal alloc; do
  CK_RUN_SUITE=$suite run_check "unit-tsan-$suite" "${NO_ASLR[@]}" build/tsan/unit-tests
done

# Every node test has a time limit: a hang is a failure, never a stall of CI.
NODE_TEST=(node --test --test-concurrency=1 --test-timeout=300000)
if compgen -G "test/integration/*.test.mjs" >/dev/null; then
  run_node integration-release MOVEXD_BIN=build/release/movexd VARIANT=release "${NODE_TEST[@]}" test/integration/
  run_node integration-asan MOVEXD_BIN=build/asan/movexd VARIANT=asan MOVEXD_ASAN=1 \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=87 \
    "${NODE_TEST[@]}" test/integration/
  # the writer thread under load, parked, killed, failing (fault injection:
  # MOVEXD_ASAN=1 means a sanitizer build with -DMX_FAULT_INJECTION), and
  # the storage paths that wait for it (eviction, deletion, WAL cuts)
  run_node integration-tsan MOVEXD_BIN=build/tsan/movexd VARIANT=tsan MOVEXD_ASAN=1 \
    "${NO_ASLR[@]}" "${NODE_TEST[@]}" test/integration/snapshot-writer.test.mjs test/integration/durability.test.mjs
fi
if compgen -G "$TSAN_LOGS/report*" >/dev/null; then
  status=1
  failed=$((failed + 1))
  echo "!! ThreadSanitizer reports (one file per process) in $TSAN_LOGS:"
  head -n 60 "$TSAN_LOGS"/report*
fi
unset TSAN_OPTIONS
if compgen -G "client/test/*.test.mjs" >/dev/null; then
  run_node client-unit MOVEXD_BIN=build/release/movexd "${NODE_TEST[@]}" client/test/
fi
if compgen -G "test/e2e/*.test.mjs" >/dev/null; then
  run_node e2e MOVEXD_BIN=build/release/movexd "${NODE_TEST[@]}" test/e2e/
fi

# libFuzzer smoke run: every harness, briefly, on the committed corpus; each
# harness counts as one test.
if compgen -G "test/fuzz/fuzz_*.c" >/dev/null; then
  echo "== fuzz-smoke"
  log=build/logs/fuzz-smoke.log
  make --no-print-directory fuzz-smoke >"$log" 2>&1
  rc=$?
  grep -E '^fuzz_' "$log" || tail -n 20 "$log"
  # one summary line per harness: "fuzz_x  N runs ... crashes K"
  ok=$(grep -cE '^fuzz_[a-z_]+ .* crashes 0$' "$log")
  bad=$(grep -cE '^fuzz_[a-z_]+(: FAILED| .* crashes [1-9])' "$log")
  passed=$((passed + ok))
  failed=$((failed + bad))
  if [[ $rc -ne 0 ]]; then
    status=1
    [[ $bad -eq 0 ]] && failed=$((failed + 1))
    echo "!! fuzz-smoke failed (exit $rc); log: $log"
  fi
fi

echo
echo "tests: $passed passed, $failed failed"
exit $status
