#!/usr/bin/env bash
# Failover under load: wrk -c64 -d20s through Hecate to three upstreams while one of them is
# killed (SIGKILL) and later restarted. A wrk Lua script counts the answers by status; the
# summary says how many were not 2xx and how many wrk saw as socket errors.
#
#   bash bench/failover.sh
#
# What a good run shows: non-2xx = 0 (or a handful: requests in flight on the killed upstream
# whose connection was reset after they were sent and that are not retried), the killed
# upstream ejected by health checks / its breaker opened, and traffic back on it after the
# restart. Retries, breaker and health settings are in the generated config below.
#
# Knobs (env): DURATION=20 CONNS=64 THREADS=2 KILL_AT=5 RESTART_AT=12 (seconds into the run)
#   UPSTREAM_PORTS="18086 18087 18088" PROXY_PORT=18089 WORK=/tmp/hecate-failover
#   HECATE_CMD (default: node_modules/.bin/bun src/main.ts) MAX_NON2XX (exit 1 above it; unset = report only)
# Needs: wrk, curl. Everything runs on 127.0.0.1 and is stopped when the script exits.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUN=${BUN:-$ROOT/node_modules/.bin/bun}
DURATION=${DURATION:-20}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
KILL_AT=${KILL_AT:-5}
RESTART_AT=${RESTART_AT:-12}
read -r -a UP_PORTS <<< "${UPSTREAM_PORTS:-18086 18087 18088}"
PROXY_PORT=${PROXY_PORT:-18089}
WORK=${WORK:-/tmp/hecate-failover}
HECATE_CMD=${HECATE_CMD:-"$BUN $ROOT/src/main.ts"}
VICTIM=${UP_PORTS[1]}

for t in wrk curl; do command -v $t > /dev/null || { echo "missing $t (apt-get install wrk curl)"; exit 1; }; done
mkdir -p "$WORK"
LOG=$WORK/logs-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOG"

# --- processes: each in its own session, killed by process group on exit -------------------
declare -A PIDS=()
start_bg() { # name, command...
  local name=$1; shift
  setsid "$@" > "$LOG/$name.log" 2>&1 &
  PIDS[$name]=$!
}
stop_bg() { # name [signal]
  local pid=${PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  kill -"${2:-TERM}" -- -"$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  unset "PIDS[$1]"
}
cleanup() { for n in "${!PIDS[@]}"; do stop_bg "$n"; done; }
trap cleanup EXIT INT TERM

wait_http() { # url, what
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  echo "$2 did not come up ($1); logs in $LOG"
  exit 1
}

start_upstream() { # port
  start_bg "upstream-$1" env DEMO_PORTS="$1" "$BUN" "$ROOT/scripts/demo-upstreams.ts"
}

# --- config -------------------------------------------------------------------------------
CONFIG=$WORK/failover.yaml
{
  echo "admin:"
  echo "  listen: \"127.0.0.1:0\""
  echo "proxy:"
  echo "  listen: \"127.0.0.1:$PROXY_PORT\""
  echo "  retry: { maxRetries: 2, perTryTimeoutSec: 2, backoffBaseMs: 10, backoffMaxMs: 100 }"
  echo "  circuitBreaker: { openAfterConsecutiveFailures: 5, cooldownSec: 2, halfOpenMaxRequests: 5 }"
  echo "  health: { intervalSec: 1, timeoutSec: 1, failThreshold: 2, successReset: 1, path: /healthz }"
  echo "  routes:"
  echo "    - name: failover"
  echo "      upstreams:"
  for p in "${UP_PORTS[@]}"; do echo "        - http://127.0.0.1:$p"; done
  echo "telemetry:"
  echo "  accessLog: false"
} > "$CONFIG"

# --- wrk script: count answers by status across threads ------------------------------------
LUA=$WORK/count-status.lua
cat > "$LUA" << 'EOF'
-- Counts responses by HTTP status in every thread; done() merges and prints them.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged, total, non2xx = {}, 0, 0
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local keys = {}
  for status, n in pairs(merged) do
    table.insert(keys, status)
    total = total + n
    if status < 200 or status > 299 then non2xx = non2xx + n end
  end
  table.sort(keys)
  io.write("status counts:")
  for _, k in ipairs(keys) do io.write(string.format(" %d=%d", k, merged[k])) end
  io.write("\n")
  local e = summary.errors
  io.write(string.format("responses=%d non2xx=%d socket_errors connect=%d read=%d write=%d timeout=%d\n",
    total, non2xx, e.connect, e.read, e.write, e.timeout))
end
EOF

# --- run ----------------------------------------------------------------------------------
for p in "${UP_PORTS[@]}"; do start_upstream "$p"; done
for p in "${UP_PORTS[@]}"; do wait_http "http://127.0.0.1:$p/healthz" "upstream :$p"; done
# shellcheck disable=SC2086
start_bg hecate $HECATE_CMD -config "$CONFIG"
wait_http "http://127.0.0.1:$PROXY_PORT/" "hecate :$PROXY_PORT"

echo "wrk -t$THREADS -c$CONNS -d${DURATION}s through hecate :$PROXY_PORT to ${UP_PORTS[*]}; kill :$VICTIM at ${KILL_AT}s, restart at ${RESTART_AT}s"
wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$LUA" "http://127.0.0.1:$PROXY_PORT/" > "$LOG/wrk.txt" 2>&1 &
WRK=$!
sleep "$KILL_AT"
echo "$(date +%T) kill -9 upstream :$VICTIM"
stop_bg "upstream-$VICTIM" KILL
sleep $((RESTART_AT - KILL_AT))
echo "$(date +%T) restart upstream :$VICTIM"
start_upstream "$VICTIM"
wait "$WRK" || true

cat "$LOG/wrk.txt"
echo "--- hecate lifecycle log (ejections, breaker) ---"
grep -E '"msg":"(upstream ejected|upstream restored|breaker opened|breaker half-open|breaker closed)"' "$LOG/hecate.log" || echo "(none)"
NON2XX=$(sed -n 's/.*non2xx=\([0-9]*\).*/\1/p' "$LOG/wrk.txt" | tail -1)
echo "non-2xx responses: ${NON2XX:-unknown}   (logs: $LOG)"
if [ -n "${MAX_NON2XX:-}" ] && { [ -z "$NON2XX" ] || [ "$NON2XX" -gt "$MAX_NON2XX" ]; }; then
  echo "FAIL: more than $MAX_NON2XX non-2xx responses"
  exit 1
fi
