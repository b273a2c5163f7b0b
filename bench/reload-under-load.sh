#!/usr/bin/env bash
# Hot reload under load: wrk drives 64 connections through Hecate for 20 s while the config
# file changes and POST /admin/reload runs once per second. A correct reload drops nothing:
# the report must show 0 non-2xx responses, 0 socket errors and every reload answered 200.
#
#   bash bench/reload-under-load.sh            (builds dist/hecate when missing)
#
# Environment: DURATION (20s), CONNS (64), THREADS (2), PROXY_PORT (18088), ADMIN_PORT (18089),
# UPSTREAM_PORTS (18084,18085), HECATE (dist/hecate). Needs wrk and curl.
# Exit status: 0 when nothing was dropped, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
PROXY_PORT=${PROXY_PORT:-18088}
ADMIN_PORT=${ADMIN_PORT:-18089}
UPSTREAM_PORTS=${UPSTREAM_PORTS:-18084,18085}
HECATE=${HECATE:-dist/hecate}
BUN=${BUN:-node_modules/.bin/bun}

for tool in wrk curl; do command -v "$tool" >/dev/null || { echo "reload-under-load: $tool is required" >&2; exit 2; }; done
[ -x "$HECATE" ] || "$BUN" run build

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

U1="http://127.0.0.1:${UPSTREAM_PORTS%,*}"
U2="http://127.0.0.1:${UPSTREAM_PORTS#*,}"

# Two variants that differ in weights, balancer, an extra route and a response header, so
# every reload really swaps routes, balancers and stage lists.
variant() {
  local v=$1 lb w1 w2 extra
  if [ "$v" = 0 ]; then lb=round_robin w1=1 w2=3 extra=even; else lb=least_request w1=2 w2=1 extra=odd; fi
  cat <<YAML
admin:
  listen: "127.0.0.1:${ADMIN_PORT}"
proxy:
  listen: "127.0.0.1:${PROXY_PORT}"
  routes:
    - name: main
      pathPrefix: /
      upstreams:
        - { url: "${U1}", weight: ${w1} }
        - { url: "${U2}", weight: ${w2} }
      lb: { algorithm: ${lb} }
      headers: { response: { set: { X-Variant: "${v}" } } }
    - name: extra-${extra}
      pathPrefix: /${extra}
      upstreams: ["${U1}"]
telemetry:
  accessLog: false
  logLevel: warn
YAML
}

DEMO_PORTS=$UPSTREAM_PORTS "$BUN" run scripts/demo-upstreams.ts >"$work/upstreams.log" 2>&1 &
pids+=($!)
variant 0 >"$work/hecate.yaml"
"$HECATE" -config "$work/hecate.yaml" >"$work/hecate.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
  if curl -fs "http://127.0.0.1:${ADMIN_PORT}/readyz" >/dev/null && curl -fs "http://127.0.0.1:${PROXY_PORT}/" >/dev/null; then break; fi
  sleep 0.1
done
curl -fs "http://127.0.0.1:${PROXY_PORT}/" >/dev/null || { echo "reload-under-load: hecate did not come up" >&2; cat "$work/hecate.log" >&2; exit 2; }

cat >"$work/count.lua" <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0 end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non2xx") end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d non2xx=%d connect=%d read=%d write=%d timeout=%d status=%d p99_ms=%.2f\n",
    summary.requests, n, e.connect, e.read, e.write, e.timeout, e.status, latency:percentile(99) / 1000))
end
LUA

# Reload once per second, alternating the variants, while wrk runs.
(
  v=1
  while :; do
    sleep 1
    variant "$v" >"$work/hecate.yaml.tmp" && mv "$work/hecate.yaml.tmp" "$work/hecate.yaml"
    code=$(curl -s -o "$work/reload.json" -w '%{http_code}' -X POST "http://127.0.0.1:${ADMIN_PORT}/admin/reload" || echo 000)
    echo "$code $(cat "$work/reload.json" 2>/dev/null)" >>"$work/reloads.log"
    v=$((1 - v))
  done
) &
reloader=$!
pids+=($reloader)

wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$work/count.lua" "http://127.0.0.1:${PROXY_PORT}/" | tee "$work/wrk.txt"
kill "$reloader" 2>/dev/null || true

result=$(grep '^RESULT' "$work/wrk.txt")
get() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$result"; }
reloads_ok=$(grep -c '^200 ' "$work/reloads.log" || true)
reloads_bad=$(grep -vc '^200 ' "$work/reloads.log" || true)
generation=$(curl -s "http://127.0.0.1:${ADMIN_PORT}/debug/vars" | sed -n 's/.*"generation":\([0-9]*\).*/\1/p')
socket=$(( $(get connect) + $(get read) + $(get write) + $(get timeout) ))

echo
echo "reload under load: $DURATION, $CONNS connections"
echo "  requests          $(get requests)"
echo "  non-2xx           $(get non2xx)"
echo "  socket errors     $socket (connect $(get connect), read $(get read), write $(get write), timeout $(get timeout))"
echo "  reloads           $reloads_ok ok, $reloads_bad failed; final generation ${generation:-?}"
echo "  p99 latency       $(get p99_ms) ms"
if [ "$reloads_bad" != 0 ]; then echo "failed reloads:"; grep -v '^200 ' "$work/reloads.log" | head -5; fi
if [ "$(get non2xx)" = 0 ] && [ "$socket" = 0 ] && [ "$reloads_bad" = 0 ] && [ "$reloads_ok" -gt 0 ]; then
  echo "PASS: nothing dropped"
else
  echo "FAIL"
  exit 1
fi
