#!/usr/bin/env bash
# Starts Hecate for the shared benchmark harness (../shared/bench/run.sh), which runs this with
# PORT (plain listener), WORKERS, UPSTREAM and WORK set; PROXY_TLS_PORT (optional) adds a
# second Hecate on TLS for the h2 row. The config turns on what the example config uses on the
# request path — host/path routing over several routes, round robin, retries, circuit breaker,
# active health checks — with the access log off (as nginx/HAProxy/Caddy run in the harness).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${HECATE_BIN:-$ROOT/dist/hecate}
WORK=${WORK:-/tmp/perf}
mkdir -p "$WORK"
conf() { # listen admin tls?
  cat <<YAML
admin: { listen: "127.0.0.1:$2" }
proxy:
  listen: "127.0.0.1:$1"
  workers: ${WORKERS:-1}
  health: { intervalSec: 5, path: /1k }
  retry: { maxRetries: 2, perTryTimeoutSec: 5 }
  circuitBreaker: { openAfterConsecutiveFailures: 5, cooldownSec: 30 }
  routes:
    - { name: static, hosts: ["static.bench.local"], pathPrefix: /assets, upstreams: ["$UPSTREAM"] }
    - { name: api, hosts: ["*.bench.local"], pathPrefix: /api, stripPrefix: true, upstreams: ["$UPSTREAM"] }
    - { name: bench, hosts: ["bench.local"], upstreams: ["$UPSTREAM"], lb: { algorithm: round_robin } }
    - { name: fallback, upstreams: ["$UPSTREAM"] }
telemetry: { accessLog: false, logLevel: warn }
YAML
  if [ "${3:-}" = tls ]; then
    printf 'tls: { certFiles: ["%s"], keyFiles: ["%s"] }\n' "$WORK/cert.pem" "$WORK/key.pem"
  fi
}
conf "${PORT:-18090}" 19090 > "$WORK/hecate-bench.yaml"
"$BIN" -config="$WORK/hecate-bench.yaml" &
if [ -n "${PROXY_TLS_PORT:-}" ]; then
  conf "$PROXY_TLS_PORT" 19091 tls > "$WORK/hecate-bench-tls.yaml"
  "$BIN" -config="$WORK/hecate-bench-tls.yaml" &
fi
wait
