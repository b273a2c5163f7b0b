#!/usr/bin/env bash
# Cost of tracing: requests/s through Hecate with tracing off (no otlpEndpoint) vs tracing on
# at `sampling: 0.1` exporting OTLP/HTTP to a local receiver, same upstream, same wrk load.
# The two variants alternate (off, on, off, on, …) so that drift of the machine hits both.
#
#   bash bench/tracing.sh
#
# What a good run shows: "on" within a few percent of "off" (90% of requests only create a
# non-recording span and propagate a traceparent; the 10% sampled are queued and exported in
# batches off the request path), and the receiver's span count ≈ 2 × 10% × requests of the
# "on" runs (a SERVER and a CLIENT span per sampled request).
#
# Knobs (env): DURATION=15 WARMUP=3 CONNS=64 THREADS=2 ROUNDS=2 SAMPLING=0.1
#   UPSTREAM_PORT=18082 PROXY_PORT=18083 SINK_PORT=18090 WORK=/tmp/hecate-tracing
#   HECATE_CMD (default: node_modules/.bin/bun src/main.ts)
# Needs: wrk, curl. Everything runs on 127.0.0.1 and is stopped when the script exits.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUN=${BUN:-$ROOT/node_modules/.bin/bun}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
SAMPLING=${SAMPLING:-0.1}
UPSTREAM_PORT=${UPSTREAM_PORT:-18082}
PROXY_PORT=${PROXY_PORT:-18083}
SINK_PORT=${SINK_PORT:-18090}
WORK=${WORK:-/tmp/hecate-tracing}
HECATE_CMD=${HECATE_CMD:-"$BUN $ROOT/src/main.ts"}

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
stop_bg() { # name
  local pid=${PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  kill -TERM -- -"$pid" 2> /dev/null || true
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

# --- a local OTLP/HTTP receiver: accepts every export and counts its spans -------------------
SINK=$WORK/otlp-sink.ts
cat > "$SINK" << 'EOF'
// Minimal OTLP/HTTP sink: 200 with an empty ExportTraceServiceResponse for every export;
// GET /stats → {"exports":N,"bytes":N,"spans":N} (spans counted by the Span message tag in each
// ScopeSpans, good enough for a benchmark).
let exports = 0, bytes = 0, spans = 0;
function countSpans(b: Uint8Array): number {
  // walk ExportTraceServiceRequest → ResourceSpans(1) → ScopeSpans(2) → Span(2)
  let n = 0;
  const walk = (buf: Uint8Array, depth: number) => {
    let i = 0;
    while (i < buf.length) {
      let tag = 0, shift = 0, x = 0;
      do { x = buf[i++]!; tag |= (x & 0x7f) << shift; shift += 7; } while (x & 0x80);
      const field = tag >>> 3, wire = tag & 7;
      if (wire === 0) { while (buf[i++]! & 0x80); continue; }
      if (wire === 1) { i += 8; continue; }
      if (wire === 5) { i += 4; continue; }
      let len = 0; shift = 0;
      do { x = buf[i++]!; len |= (x & 0x7f) << shift; shift += 7; } while (x & 0x80);
      const sub = buf.subarray(i, i + len);
      i += len;
      if (depth === 0 && field === 1) walk(sub, 1);
      else if (depth === 1 && field === 2) walk(sub, 2);
      else if (depth === 2 && field === 2) n++;
    }
  };
  walk(b, 0);
  return n;
}
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.SINK_PORT),
  async fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === "/stats") return Response.json({ exports, bytes, spans });
    const b = new Uint8Array(await req.arrayBuffer());
    exports++; bytes += b.length; spans += countSpans(b);
    return new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
  },
});
console.log(`otlp sink on ${server.port}`);
EOF

write_config() { # file, tracing(on|off)
  {
    echo "admin:"
    echo "  listen: \"127.0.0.1:0\""
    echo "proxy:"
    echo "  listen: \"127.0.0.1:$PROXY_PORT\""
    echo "  routes:"
    echo "    - name: bench"
    echo "      upstreams: [\"http://127.0.0.1:$UPSTREAM_PORT\"]"
    echo "telemetry:"
    echo "  accessLog: false"
    echo "  logLevel: warn"
    if [ "$2" = on ]; then
      echo "  otlpEndpoint: \"http://127.0.0.1:$SINK_PORT/v1/traces\""
      echo "  protocol: http/protobuf"
      echo "  sampling: $SAMPLING"
    fi
  } > "$1"
}
write_config "$WORK/off.yaml" off
write_config "$WORK/on.yaml" on

sink_spans() { curl -fsS "http://127.0.0.1:$SINK_PORT/stats" | sed -n 's/.*"spans":\([0-9]*\).*/\1/p'; }

start_bg upstream env DEMO_PORTS="$UPSTREAM_PORT" "$BUN" "$ROOT/scripts/demo-upstreams.ts"
start_bg sink env SINK_PORT="$SINK_PORT" "$BUN" "$SINK"
wait_http "http://127.0.0.1:$UPSTREAM_PORT/healthz" "upstream :$UPSTREAM_PORT"
wait_http "http://127.0.0.1:$SINK_PORT/stats" "OTLP sink :$SINK_PORT"

declare -A SUM=([off]=0 [on]=0)
declare -A REQS=([off]=0 [on]=0)
SPANS_ON=0
echo "wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS rounds; tracing on = sampling $SAMPLING, OTLP/HTTP to 127.0.0.1:$SINK_PORT"
printf '%-6s %-6s %12s %12s\n' round mode "requests/s" requests
for round in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    before=$(sink_spans)
    # shellcheck disable=SC2086
    start_bg "hecate-$mode-$round" $HECATE_CMD -config "$WORK/$mode.yaml"
    wait_http "http://127.0.0.1:$PROXY_PORT/" "hecate ($mode) :$PROXY_PORT"
    wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:$PROXY_PORT/" > /dev/null 2>&1 || true
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$PROXY_PORT/" > "$LOG/wrk-$mode-$round.txt" 2>&1
    stop_bg "hecate-$mode-$round" # SIGTERM: the last spans are flushed on shutdown
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$LOG/wrk-$mode-$round.txt")
    n=$(awk '/requests in/ {print $1}' "$LOG/wrk-$mode-$round.txt")
    printf '%-6s %-6s %12s %12s\n' "$round" "$mode" "$rps" "$n"
    SUM[$mode]=$(awk -v a="${SUM[$mode]}" -v b="$rps" 'BEGIN {print a + b}')
    REQS[$mode]=$((REQS[$mode] + n))
    if [ "$mode" = on ]; then SPANS_ON=$((SPANS_ON + $(sink_spans) - before)); fi
  done
done

OFF=$(awk -v s="${SUM[off]}" -v r="$ROUNDS" 'BEGIN {printf "%.0f", s / r}')
ON=$(awk -v s="${SUM[on]}" -v r="$ROUNDS" 'BEGIN {printf "%.0f", s / r}')
echo "---"
echo "tracing off: $OFF requests/s (mean of $ROUNDS)"
echo "tracing on:  $ON requests/s (sampling $SAMPLING)"
awk -v off="$OFF" -v on="$ON" 'BEGIN {printf "overhead:    %.1f%%\n", (off - on) / off * 100}'
# warm-up requests are traced too, so compare with the spans of all "on" traffic
echo "spans received while on: $SPANS_ON (expected ≈ 2 × $SAMPLING × requests incl. warm-up; measured requests: ${REQS[on]})"
echo "logs: $LOG"
