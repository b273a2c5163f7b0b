#!/usr/bin/env bash
# `bun run bench`: Hecate beside nginx, HAProxy, Caddy, a naive Bun proxy and direct, in one
# interleaved run of the shared harness (../shared/bench/run.sh; see its README for the knobs,
# e.g. DURATION=5 ROUNDS=2 SIZES=1k MODES=pinned bun run bench).
# Needs: apt-get install -y nginx-light haproxy caddy wrk nghttp2-client curl
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$ROOT/node_modules/.bin:$PATH"   # the harness calls `bun`
HARNESS=${HARNESS:-$ROOT/../shared/bench/run.sh}
(cd "$ROOT" && bun run build >/dev/null)
export PROXY_TLS_PORT=${PROXY_TLS_PORT:-18490}
exec bash "$HARNESS" "bash $ROOT/bench/hecate.sh"
