#!/usr/bin/env bash
# Slow-client soak with Debian's slowhttptest against a Hecate process, on demand — not run in
# CI (test/hostile/slow-clients.test.ts is the bounded CI version of the same attacks).
#
#   bash bench/hostile.sh                          # each attack 60 s, 1,000 connections
#   DURATION=300 CONNECTIONS=4000 bash bench/hostile.sh
#   MODES="-X" bash bench/hostile.sh               # only the slow read
#
# Attacks: -H slowloris (headers trickled), -B slow body (R-U-Dead-Yet), -X slow read (a
# 10 MiB response read through a tiny window). During each, a probe does a whole GET through
# the proxy with curl every 200 ms; the script reports slowhttptest's verdict, the probe
# latencies (p50/p99/max) and Hecate's RSS before, at the peak and after. It fails when a probe
# fails, when the probe p99 exceeds PROBE_P99_MS (default 100), or when RSS grows by more than
# RSS_GROWTH_MB (default 128). KEEP=1 keeps the work directory (logs, probe timings).
#
# Measured here (2 cores, loopback; bench/RESULTS.md, fourth session): 200 connections, 10 s:
# -X passes since proxy.server.sendLowWatermarkBytes (probe p99 4–6 ms, RSS 58 → ~97 → 65 MiB;
# before: p99 417 ms, peak 327 MiB, the kernel copying megabytes into each slow reader's send
# buffer). The default run (1,000 connections, 60 s each) passes; -X alone from a fresh process
# with 1,000 readers passes since the transport reads paused upstream sockets itself, a bounded
# amount per pull (RSS +77–80 MiB; was +132–155 with Bun's reads of up to 512 KiB: docs/hardening.md).
# The probe has its own upstream, so it measures the proxy and not the attacked upstream.
set -euo pipefail

DURATION=${DURATION:-60}
CONNECTIONS=${CONNECTIONS:-1000}
RATE=${RATE:-200}
MODES=${MODES:-"-H -B -X"}
PROBE_P99_MS=${PROBE_P99_MS:-100}
RSS_GROWTH_MB=${RSS_GROWTH_MB:-128}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUN=${BUN:-$ROOT/node_modules/.bin/bun}
WORK=$(mktemp -d -t hecate-hostile-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
command -v slowhttptest >/dev/null || { echo "slowhttptest is not installed (apt-get install slowhttptest)" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

wait_line() {
  for _ in $(seq 200); do
    if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "timed out waiting for /$2/ in $1" >&2
  cat "$1" >&2
  return 1
}

# upstream: /probe at once, /big 10 MiB streamed as fast as it is taken, anything else reads the body.
# Two processes of it: the attacked one, and one that only answers the probe — so the probe measures
# the proxy, not an upstream that is itself busy pushing 10 MiB streams (measured: during the -X
# ramp-up the attacked upstream answers a direct request in up to ~250 ms on this 2-core VM).
UPSTREAM_JS='
const chunk = new Uint8Array(64 * 1024).fill(120);
const s = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 255, async fetch(req) {
  const path = req.url.slice(req.url.indexOf("/", 8));
  if (path.startsWith("/probe")) return new Response("probe ok\n");
  if (path.startsWith("/big")) {
    let sent = 0;
    return new Response(new ReadableStream({ pull(c) { if (sent >= 10 << 20) return c.close(); c.enqueue(chunk); sent += chunk.length; } }, { highWaterMark: 0 }));
  }
  const n = (await req.arrayBuffer().catch(() => new ArrayBuffer(0))).byteLength;
  return new Response(`got ${n}\n`);
} });
console.log("upstream", s.port);
'
"$BUN" -e "$UPSTREAM_JS" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
"$BUN" -e "$UPSTREAM_JS" >"$WORK/probe-upstream.log" 2>&1 &
PIDS+=($!)
UP=$(wait_line "$WORK/upstream.log" '^upstream ' | awk '{print $2}')
PROBE_UP=$(wait_line "$WORK/probe-upstream.log" '^upstream ' | awk '{print $2}')
cat >"$WORK/config.yaml" <<EOF
admin: { listen: "127.0.0.1:0" }
proxy:
  listen: "127.0.0.1:0"
  routes:
    - name: probe
      pathPrefix: /probe
      upstreams: ["http://127.0.0.1:$PROBE_UP"]
    - name: r
      upstreams: ["http://127.0.0.1:$UP"]
telemetry: { accessLog: false, logLevel: info }
EOF
"$BUN" "$ROOT/src/main.ts" -config="$WORK/config.yaml" >"$WORK/hecate.log" 2>"$WORK/hecate.err" &
HPID=$!
PIDS+=($HPID)
PUB=$(wait_line "$WORK/hecate.log" '"listener":"public"' | sed -E 's/.*"address":"[^"]*:([0-9]+)".*/\1/')
echo "hecate pid $HPID on :$PUB, upstream :$UP (probe upstream :$PROBE_UP); $DURATION s per attack, $CONNECTIONS connections at $RATE/s"

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$HPID/status"; }

FAIL=0
for mode in $MODES; do
  case $mode in
    -H) args=(-H -i 10 -x 24 -u "http://127.0.0.1:$PUB/slowloris") ;;
    -B) args=(-B -i 10 -s 1000000 -x 10 -u "http://127.0.0.1:$PUB/slowbody") ;;
    -X) args=(-X -k 1 -n 1 -w 64 -y 512 -z 32 -u "http://127.0.0.1:$PUB/big") ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
  rss0=$(rss_mb)
  peak=$rss0
  PROBES="$WORK/probe$mode.txt"
  : >"$PROBES"
  slowhttptest "${args[@]}" -c "$CONNECTIONS" -r "$RATE" -l "$DURATION" -p 3 >"$WORK/slow$mode.log" 2>&1 &
  SPID=$!
  while kill -0 "$SPID" 2>/dev/null; do
    curl -s -o /dev/null -m 2 -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$PUB/probe" >>"$PROBES" || echo "000 9" >>"$PROBES"
    r=$(rss_mb)
    peak=$(awk -v a="$peak" -v b="$r" 'BEGIN { print (b > a ? b : a) }')
    sleep 0.2
  done
  wait "$SPID" || true
  sleep 1
  rss1=$(rss_mb)
  verdict=$(sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$WORK/slow$mode.log" | grep -Eo 'service available: *[A-Z]+' | tail -1 | tr -s ' ' || true)
  read -r n bad p50 p99 max < <(sort -k2 -n "$PROBES" | awk '
    { t[NR] = $2 * 1000; if ($1 != "200") bad++ }
    END { i = int(NR * 0.99) + 1; if (i > NR) i = NR; printf "%d %d %.1f %.1f %.1f\n", NR, bad + 0, t[int(NR * 0.5) + 1], t[i], t[NR] }')
  echo "slowhttptest $mode: ${verdict:-?}; probes n=$n failed=$bad p50=${p50}ms p99=${p99}ms max=${max}ms; hecate RSS ${rss0} → peak ${peak} → ${rss1} MiB"
  if [ "$bad" != 0 ] || awk -v p="$p99" -v l="$PROBE_P99_MS" 'BEGIN { exit !(p > l) }' || awk -v a="$rss0" -v b="$peak" -v l="$RSS_GROWTH_MB" 'BEGIN { exit !(b - a > l) }'; then
    echo "  FAIL ($mode)"
    FAIL=1
  fi
  kill -0 "$HPID" 2>/dev/null || { echo "CRASH: hecate exited" >&2; tail -20 "$WORK/hecate.err" >&2; exit 1; }
done
[ "$FAIL" = 0 ] && echo "PASS" || echo "FAIL"
exit "$FAIL"
