#!/usr/bin/env bash
# Cost of the full policy chain: the same proxy with and without policies, measured with wrk in
# alternating rounds against one upstream.
#
#   bash bench/policy.sh
#
# Two Hecate instances on 127.0.0.1, both routing everything to the upstream on :18080:
#   plain   :18091   no policy at all
#   policy  :18092   trustedProxies 127.0.0.1/32; global ipAcl with 10,000 deny CIDRs (random
#                    /24s and /32s; the benchmark's client addresses are never in them, so each
#                    request walks the trie and passes); route Bearer auth; route rate limit keyed
#                    by header X-Api-Key with rps/burst 1e9 (so nothing is refused, but every
#                    request takes a token from one of 10,000 buckets).
# wrk sends the same headers to both (a Lua script draws a client address from 198.18.0.0/15
# for X-Forwarded-For and one of 10,000 API keys per request, plus the Bearer token), so the
# difference is the policy work. Every answer must be 200: the script counts non-2xx and fails
# if there are any (a refused request would make the policy instance look faster).
#
# Output: per round req/s and p50/p99 for each instance, then medians and the ratio
# policy/plain. Expect the policy instance within a few percent of plain: ACL lookup is a
# ≤ 32-step trie walk whatever the number of CIDRs, the bucket is one Map lookup, auth one
# SHA-256 and a constant-time compare.
#
# Knobs (env): DURATION=10 ROUNDS=3 CONNS=64 THREADS=1 CIDRS=10000 KEYS=10000 WORK=/tmp/hecate-policy-bench
#   PIN=1 (proxies on CPU 1, wrk + upstream on CPU 0; needs taskset) HECATE_CMD (default: bun src/main.ts)
# Needs: wrk, curl; nginx (upstream serving a 1 KiB file) if present, else the Bun demo upstream.
# Everything runs on 127.0.0.1 and is stopped when the script exits. Not run by CI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUN=${BUN:-$ROOT/node_modules/.bin/bun}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
CIDRS=${CIDRS:-10000}
KEYS=${KEYS:-10000}
PIN=${PIN:-1}
WORK=${WORK:-/tmp/hecate-policy-bench}
HECATE_CMD=${HECATE_CMD:-"$BUN $ROOT/src/main.ts"}
UPSTREAM_PORT=18080
PLAIN_PORT=18091
POLICY_PORT=18092
TOKEN=bench-token-0123456789

for t in wrk curl; do command -v $t > /dev/null || { echo "missing $t (apt-get install wrk curl)"; exit 1; }; done
if [ "$PIN" = 1 ] && ! command -v taskset > /dev/null; then PIN=0; fi
# command prefixes: CPU 0 for wrk and the upstream, CPU 1 for the proxies (empty when PIN=0)
CPU0=() CPU1=()
if [ "$PIN" = 1 ]; then CPU0=(taskset -c 0) CPU1=(taskset -c 1); fi

mkdir -p "$WORK/www" "$WORK/tmp"
LOG=$WORK/logs-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOG"

# --- processes: each in its own session, killed by process group on exit -------------------
declare -A PIDS=()
start_bg() { # name, command...
  local name=$1; shift
  setsid "$@" > "$LOG/$name.log" 2>&1 &
  PIDS[$name]=$!
}
cleanup() {
  for n in "${!PIDS[@]}"; do
    kill -TERM -- -"${PIDS[$n]}" 2> /dev/null || true
    wait "${PIDS[$n]}" 2> /dev/null || true
  done
}
trap cleanup EXIT INT TERM

wait_http() { # url, what, [header]
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null --max-time 1 ${3:+-H "$3"} "$1" && return 0
    sleep 0.1
  done
  echo "$2 did not come up ($1); logs in $LOG"
  exit 1
}

# --- upstream on :18080 ---------------------------------------------------------------------
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$WORK/www/1k"
if command -v nginx > /dev/null; then
  cat > "$WORK/upstream.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $WORK/upstream.pid;
error_log $WORK/upstream.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_timeout 300s;
  keepalive_requests 100000000;
  client_body_temp_path $WORK/tmp/body;
  proxy_temp_path $WORK/tmp/proxy;
  fastcgi_temp_path $WORK/tmp/fcgi;
  uwsgi_temp_path $WORK/tmp/uwsgi;
  scgi_temp_path $WORK/tmp/scgi;
  server { listen 127.0.0.1:$UPSTREAM_PORT backlog=4096; root $WORK/www; location / { } }
}
EOF
  start_bg upstream "${CPU0[@]}" nginx -c "$WORK/upstream.conf"
  UPATH=/1k
else
  start_bg upstream "${CPU0[@]}" env DEMO_PORTS=$UPSTREAM_PORT "$BUN" "$ROOT/scripts/demo-upstreams.ts"
  UPATH=/bench
fi
wait_http "http://127.0.0.1:$UPSTREAM_PORT$UPATH" upstream

# --- configs --------------------------------------------------------------------------------
# 10,000 deny CIDRs: random /24s (and every 10th a /32) outside 198.18.0.0/15 and 127/8.
"$BUN" -e '
  const n = Number(process.argv[1]);
  const out = [];
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  while (out.length < n) {
    const a = 1 + Math.floor(rnd() * 222), b = Math.floor(rnd() * 256), c = Math.floor(rnd() * 256);
    if (a === 127 || (a === 198 && (b === 18 || b === 19))) continue;
    out.push(out.length % 10 === 9 ? `${a}.${b}.${c}.${1 + Math.floor(rnd() * 254)}` : `${a}.${b}.${c}.0/24`);
  }
  console.log(JSON.stringify(out));
' "$CIDRS" > "$WORK/cidrs.json"

write_config() { # file, port, with-policy (0|1)
  "$BUN" -e '
    const [file, port, withPolicy, up, token, cidrsFile] = process.argv.slice(1);
    const route = { name: "bench", upstreams: [up] };
    const proxy = { listen: `127.0.0.1:${port}`, trustedProxies: ["127.0.0.1/32"], routes: [route] };
    if (withPolicy === "1") {
      proxy.policy = { ipAcl: { denyCidrs: JSON.parse(require("fs").readFileSync(cidrsFile, "utf8")) } };
      route.auth = { bearerToken: token };
      route.policy = { rateLimit: { rps: 1e9, burst: 1e9, key: "header:X-Api-Key" } };
    }
    const cfg = { admin: { listen: "127.0.0.1:0" }, proxy, telemetry: { accessLog: false, logLevel: "warn" } };
    require("fs").writeFileSync(file, JSON.stringify(cfg, null, 1));
  ' "$1" "$2" "$3" "http://127.0.0.1:$UPSTREAM_PORT" "$TOKEN" "$WORK/cidrs.json"
}
write_config "$WORK/plain.json" $PLAIN_PORT 0
write_config "$WORK/policy.json" $POLICY_PORT 1

# shellcheck disable=SC2086
start_bg plain "${CPU1[@]}" $HECATE_CMD --config "$WORK/plain.json"
# shellcheck disable=SC2086
start_bg policy "${CPU1[@]}" $HECATE_CMD --config "$WORK/policy.json"
wait_http "http://127.0.0.1:$PLAIN_PORT$UPATH" "plain proxy"
wait_http "http://127.0.0.1:$POLICY_PORT$UPATH" "policy proxy" "Authorization: Bearer $TOKEN"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$POLICY_PORT$UPATH")
[ "$code" = 401 ] || { echo "policy proxy answered $code without a token (expected 401): is auth configured?"; exit 1; }

# --- wrk script: random client address and API key per request, status counts -------------
cat > "$WORK/policy.lua" <<EOF
local keys = $KEYS
local token = "$TOKEN"
local path = "$UPATH"
local non2xx = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) math.randomseed(os.time() + math.floor(os.clock() * 1e6)) end
function request()
  local xff = string.format("198.%d.%d.%d", 18 + math.random(0, 1), math.random(0, 255), math.random(1, 254))
  return wrk.format("GET", path, {
    ["Host"] = "bench.local",
    ["X-Forwarded-For"] = xff,
    ["X-Api-Key"] = "key-" .. math.random(1, keys),
    ["Authorization"] = "Bearer " .. token,
  })
end
function response(status, headers, body) if status < 200 or status > 299 then non2xx = non2xx + 1 end end
function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("non2xx") or 0) end
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
EOF

measure() { # name, port → "req/s p50 p99 non2xx sockerr"
  "${CPU0[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/policy.lua" "http://127.0.0.1:$2" > "$LOG/wrk-$1-$3.txt" 2>&1
  grep '^RESULT' "$LOG/wrk-$1-$3.txt" | cut -d' ' -f2-
}

echo "warming up…"
for p in $PLAIN_PORT $POLICY_PORT; do "${CPU0[@]}" wrk -t1 -c16 -d3s -s "$WORK/policy.lua" "http://127.0.0.1:$p" > /dev/null 2>&1 || true; done

printf "%-6s %-7s %12s %10s %10s %8s %8s\n" round target req/s p50_ms p99_ms non2xx sockerr | tee "$LOG/results.txt"
declare -a PLAIN_RPS=() POLICY_RPS=()
BAD=0
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="plain policy"; else order="policy plain"; fi
  for t in $order; do
    port=$PLAIN_PORT; [ "$t" = policy ] && port=$POLICY_PORT
    read -r rps p50 p99 non2xx sockerr <<< "$(measure "$t" "$port" "$r")"
    printf "%-6s %-7s %12s %10s %10s %8s %8s\n" "$r" "$t" "$rps" "$p50" "$p99" "$non2xx" "$sockerr" | tee -a "$LOG/results.txt"
    [ "$non2xx" = 0 ] || BAD=1
    if [ "$t" = plain ]; then PLAIN_RPS+=("$rps"); else POLICY_RPS+=("$rps"); fi
  done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mp=$(median "${PLAIN_RPS[@]}")
mq=$(median "${POLICY_RPS[@]}")
echo
echo "median req/s: plain $mp, policy $mq, policy/plain $(awk -v a="$mq" -v b="$mp" 'BEGIN { printf "%.3f", a / b }')"
echo "(ACL $CIDRS CIDRs, $KEYS rate-limit keys, Bearer auth; ${CONNS} connections, ${DURATION}s × $ROUNDS rounds; logs in $LOG)"
if [ "$BAD" != 0 ]; then echo "FAIL: some answers were not 2xx (see $LOG/wrk-*.txt)"; exit 1; fi
