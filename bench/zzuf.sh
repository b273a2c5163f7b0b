#!/usr/bin/env bash
# Black-box mutation fuzzing of Hecate's public listener (SPEC §6), on demand — not run in CI.
#
#   bash bench/zzuf.sh                      # 1,000 mutants
#   MUTANTS=20000 RATIO=0.001:0.05 bash bench/zzuf.sh
#
# 1. records real requests: curl (GET, HEAD, form POST, JSON PUT, chunked upload, multipart,
#    Expect: 100-continue, keep-alive pair, WebSocket and h2c upgrade requests, HTTP/1.0) sent
#    to a raw recorder that saves each connection's bytes; the hostile corpus
#    (test/hostile/cases.ts) is added to the seeds;
# 2. mutates them with zzuf (bit flips at a random ratio in RATIO, seed = mutant number, so a
#    run is reproducible: `zzuf -s N -r R [-P '\r\n: ' [-b 30-]] < seed`);
# 3. sends every mutant as raw bytes to a Hecate process (bun src/main.ts) in front of an echo
#    upstream, 8 at a time, and asks the admin /healthz every 25 mutants (answer within 1 s).
#
# Passes when Hecate never exits, /healthz always answers 200, and no mutant gets a 500 (an
# unhandled exception). Needs: zzuf, curl (Debian packages). Ports: all 127.0.0.1:0.
set -euo pipefail

MUTANTS=${MUTANTS:-1000}
RATIO=${RATIO:-0.002:0.03}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUN=${BUN:-$ROOT/node_modules/.bin/bun}
WORK=$(mktemp -d -t hecate-zzuf-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
command -v zzuf >/dev/null || { echo "zzuf is not installed (apt-get install zzuf)" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl is not installed" >&2; exit 2; }

# wait_line FILE REGEX: print the first line of FILE matching REGEX (10 s at most)
wait_line() {
  for _ in $(seq 200); do
    if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "timed out waiting for /$2/ in $1" >&2
  cat "$1" >&2
  return 1
}

mkdir -p "$WORK/seeds" "$WORK/mut"

# ---- 1. record seeds ------------------------------------------------------------------------
"$BUN" -e '
const dir = process.argv[1];
let n = 0;
const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: {
  open(s) { s.data = { id: n++, bufs: [] }; },
  data(s, d) {
    s.data.bufs.push(Buffer.from(d));
    const all = Buffer.concat(s.data.bufs).toString("latin1");
    if (all.includes("\r\n\r\n") && !s.data.answered) {
      s.data.answered = true;
      if (/^Expect: 100-continue/im.test(all)) s.write("HTTP/1.1 100 Continue\r\n\r\n");
      // answer once the body had time to come; keep-alive clients send their next request
      setTimeout(() => s.write("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), 100);
      setTimeout(() => s.end(), 300);
    }
  },
  close(s) { if (s.data.bufs.length) Bun.write(`${dir}/rec-${s.data.id}`, Buffer.concat(s.data.bufs)); },
} });
console.log("recorder", l.port);
' "$WORK/seeds" >"$WORK/recorder.log" 2>&1 &
PIDS+=($!)
REC=$(wait_line "$WORK/recorder.log" '^recorder ' | awk '{print $2}')
R="http://127.0.0.1:$REC"
c() { curl -s -o /dev/null -m 3 "$@" || true; }
c "$R/"
c "$R/api/items?q=1&sort=desc" -H 'Accept: application/json' -H 'Cookie: sid=abc; hecate_sticky_r=0123456789abcdef' -H 'X-Forwarded-For: 10.0.0.1'
c -I "$R/static/app.js"
c -d 'a=1&b=two' "$R/form"
c -X PUT -H 'Content-Type: application/json' -d '{"id":1,"name":"x"}' "$R/api/items/1"
c -H 'Transfer-Encoding: chunked' --data-binary @"$ROOT/package.json" "$R/upload"
c -F "file=@$ROOT/package.json" "$R/multipart"
c -H 'Expect: 100-continue' --data-binary @"$ROOT/package.json" "$R/expect"
c "$R/one" "$R/two"
c -0 "$R/http10"
c -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "$R/ws"
c --http2 "$R/h2c-upgrade"
c -H 'traceparent: 00-0af7651916cd43dd8448eb211c00f319-b7ad6b7169203331-01' -H 'tracestate: a=b' -H 'Authorization: Bearer t0k3n' "$R/traced"
sleep 0.5
kill "${PIDS[-1]}" 2>/dev/null || true
sleep 0.2
"$BUN" -e '
const { CASES } = await import(process.argv[1] + "/test/hostile/cases.ts");
let i = 0;
for (const c of CASES) {
  const bytes = Buffer.from(Array.isArray(c.send) ? c.send.join("") : c.send, "latin1");
  if (bytes.length <= 200_000) await Bun.write(`${process.argv[2]}/case-${i++}`, bytes);
}
' "$ROOT" "$WORK/seeds"
SEEDS=("$WORK"/seeds/*)
echo "seeds: ${#SEEDS[@]} ($(ls "$WORK"/seeds/rec-* | wc -l) recorded with curl, the rest from test/hostile/cases.ts)"

# ---- 2. mutants -------------------------------------------------------------------------------
# three kinds, by mutant number: any byte may flip; CR, LF, ":" and SP kept (-P) so that the
# message structure survives and mutations land in methods, targets, names, values, bodies;
# the same from byte 30 on (-b 30-), which mostly spares the request line
for i in $(seq 1 "$MUTANTS"); do
  seed=${SEEDS[$((i % ${#SEEDS[@]}))]}
  case $((i % 3)) in
    0) zzuf -s "$i" -r "$RATIO" <"$seed" >"$WORK/mut/$i" ;;
    1) zzuf -s "$i" -r "$RATIO" -P '\r\n: ' <"$seed" >"$WORK/mut/$i" ;;
    2) zzuf -s "$i" -r "$RATIO" -P '\r\n: ' -b 30- <"$seed" >"$WORK/mut/$i" ;;
  esac
done
echo "mutants: $MUTANTS (zzuf -r $RATIO, seeds 1..$MUTANTS)"

# ---- 3. Hecate and an echo upstream -------------------------------------------------------------
"$BUN" -e '
const s = Bun.serve({ hostname: "127.0.0.1", port: 0, async fetch(req) {
  const body = await req.arrayBuffer().catch(() => new ArrayBuffer(0));
  return new Response(`echo ${req.method} ${body.byteLength}\n`);
} });
console.log("upstream", s.port);
' >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
UP=$(wait_line "$WORK/upstream.log" '^upstream ' | awk '{print $2}')
cat >"$WORK/config.yaml" <<EOF
admin: { listen: "127.0.0.1:0" }
proxy:
  listen: "127.0.0.1:0"
  limits: { bodyBytesCap: 1048576 }
  server: { idleTimeoutSec: 8 }
  retry: { maxRetries: 1, perTryTimeoutSec: 2 }
  routes:
    - name: api
      pathPrefix: /api
      upstreams: ["http://127.0.0.1:$UP"]
      stickiness: { enabled: true }
    - name: r
      upstreams: ["http://127.0.0.1:$UP"]
      lb: { algorithm: maglev, hashKey: sid }
telemetry: { accessLog: false, logLevel: info }
EOF
"$BUN" "$ROOT/src/main.ts" -config="$WORK/config.yaml" >"$WORK/hecate.log" 2>"$WORK/hecate.err" &
HPID=$!
PIDS+=($HPID)
PUB=$(wait_line "$WORK/hecate.log" '"listener":"public"' | sed -E 's/.*"address":"[^"]*:([0-9]+)".*/\1/')
ADM=$(wait_line "$WORK/hecate.log" '"listener":"admin"' | sed -E 's/.*"address":"[^"]*:([0-9]+)".*/\1/')
echo "hecate pid $HPID, public :$PUB, admin :$ADM, upstream :$UP"

# ---- 4. send ----------------------------------------------------------------------------------
set +e
"$BUN" -e '
const [dir, count, pub, adm, pid] = process.argv.slice(1);
const { connect } = await import("node:net");
const alive = () => { try { process.kill(Number(pid), 0); return true; } catch { return false; } };
function send(bytes) {
  return new Promise((resolve) => {
    const s = connect(Number(pub), "127.0.0.1");
    const got = [];
    const t = setTimeout(() => { s.destroy(); resolve({ out: Buffer.concat(got), timedOut: true }); }, 3000);
    s.on("data", (d) => got.push(d));
    s.on("error", () => {});
    s.on("close", () => { clearTimeout(t); resolve({ out: Buffer.concat(got), timedOut: false }); });
    s.on("connect", () => s.write(bytes));
  });
}
async function healthz() {
  const t0 = performance.now();
  try {
    const r = await fetch(`http://127.0.0.1:${adm}/healthz`, { signal: AbortSignal.timeout(1000) });
    return r.status === 200 && (await r.text()) === "ok\n" ? performance.now() - t0 : -1;
  } catch { return -1; }
}
const stats = new Map(); let silent = 0, timedOut = 0, health = 0, healthFail = 0, worstHealth = 0, done = 0;
const fivehundreds = [];
const n = Number(count);
let next = 1;
async function worker() {
  for (;;) {
    const i = next++;
    if (i > n) return;
    const bytes = await Bun.file(`${dir}/${i}`).bytes();
    const r = await send(bytes);
    const head = r.out.toString("latin1", 0, 12);
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
    if (r.timedOut) timedOut++;
    else if (!m) silent++;
    else {
      stats.set(m[1], (stats.get(m[1]) ?? 0) + 1);
      if (m[1] === "500") fivehundreds.push(i);
    }
    if (++done % 25 === 0) {
      const ms = await healthz();
      health++;
      if (ms < 0 || !alive()) { healthFail++; console.log(`healthz FAILED after mutant ${i}`); }
      else worstHealth = Math.max(worstHealth, ms);
    }
  }
}
await Promise.all(Array.from({ length: 8 }, worker));
const ms = await healthz();
const ok = alive() && ms >= 0 && healthFail === 0 && fivehundreds.length === 0;
console.log(JSON.stringify({ mutants: n, statuses: Object.fromEntries([...stats].sort()), closedWithoutAnswer: silent, stillOpenAfter3s: timedOut, healthChecks: health + 1, healthFailures: healthFail + (ms < 0 ? 1 : 0), worstHealthMs: +worstHealth.toFixed(1), hecateAlive: alive(), internalErrors500: fivehundreds.slice(0, 20) }));
process.exit(ok ? 0 : 1);
' "$WORK/mut" "$MUTANTS" "$PUB" "$ADM" "$HPID"
RC=$?
set -e
if ! kill -0 "$HPID" 2>/dev/null; then
  echo "CRASH: hecate exited" >&2
  tail -20 "$WORK/hecate.err" >&2
  RC=1
fi
if grep -q '"level":"error"' "$WORK/hecate.log"; then
  echo "error log lines:"
  grep '"level":"error"' "$WORK/hecate.log" | sort | uniq -c | sort -rn | head -10
fi
[ "$RC" = 0 ] && echo "PASS: 0 crashes, /healthz answered throughout" || echo "FAIL"
exit "$RC"
