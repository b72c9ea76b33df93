#!/usr/bin/env bash
# run-bench.sh - build and run every benchmark in bench/, print a summary.
# `make bench` calls this. Sections 1-4 take about 4 minutes on an idle
# 2-core machine, 7-8 on a busy one; the side-by-side comparison (5) and the
# connection/latency targets (6) add about 29 minutes (docs/BENCHMARKS.md);
# the environment below can shorten it.
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
#   CMP_REPS       repetitions of the side-by-side comparison (default 3)
#   CMP_DURATION   measured seconds per cell of it (default 5)
#   CMP_SERVERS    servers compared (default: movexd, ceiling,
#                  ceiling-per-frame and the four peers of bench/peers/)
#   TGT_REPS       repetitions of each connection/latency target (default 3)
#   TGT_IDLE       idle connection counts measured (default 10000,100000)
#   TGT_STORM      subscribers in the reconnect storm (default 10000)
#   TGT_RATES      paced rates for the ack-latency target (default 10000,2000)
#   SKIP_OLD       1: run only the comparison and the targets (sections 5-6)
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
CMP_REPS=${CMP_REPS:-3}
CMP_DURATION=${CMP_DURATION:-5}
CMP_SERVERS=${CMP_SERVERS:-movexd,ceiling,ceiling-per-frame,movex-server,sharedb,colyseus,y-websocket}
TGT_REPS=${TGT_REPS:-3}
TGT_IDLE=${TGT_IDLE:-10000,100000}
TGT_STORM=${TGT_STORM:-10000}
TGT_RATES=${TGT_RATES:-10000,2000}
SKIP_OLD=${SKIP_OLD:-0}

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

if [ "$SKIP_OLD" != 1 ]; then
echo
echo "== 1/7 digest: cost of one action vs state size (3 runs, each a median of 11) =="
for i in 1 2 3; do
    build/release/bench/digest_bench | tee -a "$OUT/digest.txt"
done

echo
echo "== 2/7 acked actions per second by fsync policy =="
node bench/ack_throughput.mjs --reps "$ACK_REPS" --duration "$ACK_DURATION" --dir "$BENCH_DIR" \
    --json "$OUT/ack.json" | tee "$OUT/ack.txt"

if [ "$BENCH_SYSCALLS" = 1 ] && command -v perf >/dev/null 2>&1; then
    echo
    echo "== 2b/7 the same load, 1 short pass, counting the daemon's system calls (perf stat) =="
    node bench/ack_throughput.mjs --reps 1 --duration 2 --warmup 1 --syscalls 1 --dir "$BENCH_DIR" \
        --json "$OUT/ack-syscalls.json" | tee "$OUT/ack-syscalls.txt"
fi

echo
echo "== 3/7 recovery: start-up on $REC_ACTIONS logged actions over $REC_ROOMS rooms =="
node bench/recovery.mjs --rooms "$REC_ROOMS" --actions "$REC_ACTIONS" --reps "$REC_REPS" --max-seconds "$REC_MAX_S" --dir "$BENCH_DIR" \
    --json "$OUT/recovery.json" | tee "$OUT/recovery.txt"

echo
echo "== 4/7 memory with $ROOMS_N rooms: idle-room eviction on, and off (reference) =="
node bench/rooms.mjs --rooms "$ROOMS_N" --dir "$BENCH_DIR" --json "$OUT/rooms.json" | tee "$OUT/rooms.txt"
fi

# the peers' npm packages, pinned in bench/peers/package-lock.json (never
# installed by make test)
if [[ ",$CMP_SERVERS," =~ ,(movex-server|sharedb|colyseus|y-websocket), ]] && [ ! -d bench/peers/node_modules ]; then
    (cd bench/peers && npm ci --no-audit --no-fund --loglevel=error)
fi

echo
echo "== 5/7 side by side: $CMP_SERVERS on W1-W4, $CMP_REPS interleaved repetitions =="
node bench/compare.mjs --reps "$CMP_REPS" --duration "$CMP_DURATION" --servers "$CMP_SERVERS" --dir "$BENCH_DIR" \
    --json "$OUT/compare.json" | tee "$OUT/compare.txt"

echo
echo "== 6/7 targets: idle connections ($TGT_IDLE), reconnect storm ($TGT_STORM), ack p99 at 10k/s, W4 fsync always/no =="
node bench/targets.mjs --reps "$TGT_REPS" --idle "$TGT_IDLE" --storm "$TGT_STORM" --rates "$TGT_RATES" --dir "$BENCH_DIR" \
    --json "$OUT/targets.json" | tee "$OUT/targets.txt"

set +e +o pipefail # the summary only extracts lines; a missing one is not an error
echo
echo "== 7/7 summary ($(( $(date +%s) - start )) s; raw results in $OUT) =="
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
echo "side by side (medians; full tables in $OUT/compare.txt):"
grep -E '^W[1-4] |^\| (movexd|ceiling|movex-server|sharedb|colyseus|y-websocket) |movexd / ' "$OUT/compare.txt" | sed 's/^/  /'
echo "targets:"
sed -n '/^summary/,$p' "$OUT/targets.txt" | tail -n +2 | sed 's/^/  /' 
