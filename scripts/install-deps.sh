#!/usr/bin/env bash
# Installs what movexd needs on Debian 12, only what is missing.
#   scripts/install-deps.sh          build + run dependencies
#   scripts/install-deps.sh --test   also what `make test` needs (Check,
#                                    clang for fuzzing, Node.js + the test
#                                    client's npm packages, and Debian's
#                                    Chromium for the browser end-to-end
#                                    tests in test/e2e/)
set -euo pipefail
cd "$(dirname "$0")/.."

# build-essential's gcc-12 brings the sanitizer runtimes `make test` uses
# (libasan8, libubsan1, libtsan2 via libgcc-12-dev): no package of their own
pkgs=(build-essential pkg-config libwebsockets-dev libjansson-dev libsodium-dev libssl-dev liblua5.4-dev libhiredis-dev)
# the daemon's event loop: libwebsockets' libuv plugin, loaded at run time
# (libwebsockets-dev pulls it in, the runtime package libwebsockets17 does
# not; without it movexd falls back to poll: docs/OPERATIONS.md)
pkgs+=(libwebsockets-evlib-uv libuv1 libuv1-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(check nodejs npm openssl curl python3 clang libclang-rt-14-dev systemd man-db)
  # cluster mode's tests start their own redis-server (docs/CLUSTER.md),
  # replicas and Sentinels (test/integration/cluster-lib.mjs); a Sentinel
  # is `redis-server CONF --sentinel`, so Debian's redis-sentinel package
  # (a symlink plus a system-wide Sentinel service) is not needed
  pkgs+=(redis-server)
  # test/e2e/ drives /usr/bin/chromium through playwright-core (Playwright's
  # own browser downloads are not used)
  pkgs+=(chromium)
  # alloc-interposed.test.mjs runs movexd -t under memcheck (the block cache's
  # probe must read nothing it does not own there)
  pkgs+=(valgrind)
fi

missing=()
for p in "${pkgs[@]}"; do
  # node may come from elsewhere than Debian's package (a newer install);
  # accept any working node >= 18 / npm.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "${1:-}" == "--test" ]]; then
  # The integration tests' WebSocket client (package `ws`) and the e2e
  # tests' browser driver (`playwright-core`), pinned by the committed
  # package-lock.json.
  if [[ ! -d test/node_modules/ws || ! -d test/node_modules/playwright-core ]]; then
    echo "install-deps: npm ci in test/"
    (cd test && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
