#!/usr/bin/env bash
# Crash-recovery soak test: N cycles of "pipelined writers, SIGKILL at a
# random moment, restart on the same data dir, resend unacked actions,
# verify every ack / exactly-once / checksums" (test/integration/crash.mjs).
#
#   scripts/crash-test.sh [N] [crash.mjs options...]
#     N defaults to $N or 1000; options e.g. --seed S, --fsync everysec.
#   MOVEXD_BIN selects the daemon (default build/release/movexd, built if
#   missing); set MOVEXD_ASAN=1 for a sanitizer build (scales timeouts).
# Prints the seed at the start and on failure; exit status 0 = pass.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-1000}
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
  n=$1
  shift
fi
bin=${MOVEXD_BIN:-build/release/movexd}
if [[ ! -x $bin ]]; then
  if [[ $bin == build/release/movexd ]]; then
    make --no-print-directory VARIANT=release all
  else
    echo "crash-test: $bin not found" >&2
    exit 1
  fi
fi
[[ -d test/node_modules/ws ]] || scripts/install-deps.sh --test
exec env MOVEXD_BIN="$bin" node test/integration/crash.mjs --cycles "$n" "$@"
