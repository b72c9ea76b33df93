#!/usr/bin/env bash
# run-bench.sh - build and run every benchmark in bench/, print a summary.
# `make bench` calls this. About 4 minutes on an idle 2-core machine, 7-8 on
# a busy one (docs/BENCHMARKS.md); the environment below can shorten it.
#
# Environment (all optional):
#   BENCH_DIR      where temporary data dirs go (default: $TMPDIR or /tmp);
#                  the file system matters for the fsync numbers
#   ACK_REPS       repetitions per fsync policy of the ack benchmark (default 3)
#   ACK_DURATION   measured seconds per repetition (default 5)
#   REC_REPS       daemon starts per recovery variant (default 5)
#   REC_MAX_S      but stop a variant after 3 starts once its starts took more
#                  than this many seconds (default 60; 0 = always REC_REPS)
#   REC_ACTIONS    logged actions for the recovery benchmark (default 1000000)
#   REC_ROOMS      rooms they are spread over (default 10000)
#   ROOMS_N        rooms for the memory benchmark (default 100000; ~2 min)
#   BENCH_SYSCALLS 1 (default): one extra short ack pass counting the daemon's
#                  system calls with `perf stat` (skipped when perf is missing)
#
# Raw output and JSON results go to build/bench-results/<timestamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}}
ACK_REPS=${ACK_REPS:-3}
ACK_DURATION=${ACK_DURATION:-5}
REC_REPS=${REC_REPS:-5}
REC_MAX_S=${REC_MAX_S:-60}
REC_ACTIONS=${REC_ACTIONS:-1000000}
REC_ROOMS=${REC_ROOMS:-10000}
BENCH_SYSCALLS=${BENCH_SYSCALLS:-1}
ROOMS_N=${ROOMS_N:-100000}

make --no-print-directory VARIANT=release all bench-bin >/dev/null
for f in build/release/movexd build/release/bench/digest_bench build/release/bench/wal_gen; do
    [ -x "$f" ] || { echo "run-bench: $f was not built" >&2; exit 1; }
done
# Node.js and the `ws` package (the load generator's WebSocket client) come
# with the test dependencies
if ! command -v node >/dev/null 2>&1 || [ ! -f test/node_modules/ws/index.js ]; then
    scripts/install-deps.sh --test
fi

OUT=build/bench-results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
start=$(date +%s)

{
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, kernel $(uname -r)"
    echo "bench dir: $BENCH_DIR on $(df -T "$BENCH_DIR" | awk 'NR==2{print $2 " (" $1 ")"}')"
    echo "node $(node --version), movexd $(build/release/movexd --version | awk '{print $2}'), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty')"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/machine.txt"

echo
echo "== 1/5 digest: cost of one action vs state size (3 runs, each a median of 11) =="
for i in 1 2 3; do
    build/release/bench/digest_bench | tee -a "$OUT/digest.txt"
done

echo
echo "== 2/5 acked actions per second by fsync policy =="
node bench/ack_throughput.mjs --reps "$ACK_REPS" --duration "$ACK_DURATION" --dir "$BENCH_DIR" \
    --json "$OUT/ack.json" | tee "$OUT/ack.txt"

if [ "$BENCH_SYSCALLS" = 1 ] && command -v perf >/dev/null 2>&1; then
    echo
    echo "== 2b/5 the same load, 1 short pass, counting the daemon's system calls (perf stat) =="
    node bench/ack_throughput.mjs --reps 1 --duration 2 --warmup 1 --syscalls 1 --dir "$BENCH_DIR" \
        --json "$OUT/ack-syscalls.json" | tee "$OUT/ack-syscalls.txt"
fi

echo
echo "== 3/5 recovery: start-up on $REC_ACTIONS logged actions over $REC_ROOMS rooms =="
node bench/recovery.mjs --rooms "$REC_ROOMS" --actions "$REC_ACTIONS" --reps "$REC_REPS" --max-seconds "$REC_MAX_S" --dir "$BENCH_DIR" \
    --json "$OUT/recovery.json" | tee "$OUT/recovery.txt"

echo
echo "== 4/5 memory with $ROOMS_N rooms: idle-room eviction on, and off (reference) =="
node bench/rooms.mjs --rooms "$ROOMS_N" --dir "$BENCH_DIR" --json "$OUT/rooms.json" | tee "$OUT/rooms.txt"

set +e +o pipefail # the summary only extracts lines; a missing one is not an error
echo
echo "== 5/5 summary ($(( $(date +%s) - start )) s; raw results in $OUT) =="
cat "$OUT/machine.txt"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "digest (median of 3 runs):"
for pat in '1 KB, 3 x 3' '10-wide, 4 levels' '100-wide, 2 levels'; do
    grep -F "$pat" "$OUT/digest.txt" | awk -F: '{print $2}' | awk '{print $1}' | sort -n | sed -n 2p |
        xargs -I{} echo "  inc + checksum, $pat: {} ns/action"
done
for pat in 'document-shaped (10-wide)' 'wide containers (100-wide)'; do
    echo "  ratio 1 MB / 1 KB, $pat, per run: $(grep -F "$pat" "$OUT/digest.txt" | sed 's/.*): \([0-9.]*\).*/\1/' | paste -sd' ')"
done
echo "ack throughput (64 writers, median [min..max]):"
sed -n '/^summary/,$p' "$OUT/ack.txt" | tail -n +2
if [ -f "$OUT/ack-syscalls.txt" ]; then
    echo "group commit and send path (one short pass):"
    sed -n '/^summary/,$p' "$OUT/ack-syscalls.txt" | grep -o 'fsync [a-z]* .*acks per WAL write.*' | sed 's/^/  /;s/ acks\/s.*acks per/ ... acks per/'
fi
echo "recovery (median [min..max], target < 3 s):"
sed -n '/^summary/,$p' "$OUT/recovery.txt" | tail -n +2
echo "memory with $ROOMS_N rooms:"
grep -E '^  (evict|reference) |^summary' "$OUT/rooms.txt" | sed 's/^summary: /  /' 
