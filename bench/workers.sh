#!/usr/bin/env bash
# proxy.workers on this machine: requests/s and proxy CPU per request, unpinned, for
#   nginx (reverse proxy, 2 workers, upstream keepalive) | Hecate workers: 2 | Hecate workers: 1
# through the same upstream (nginx, 1 worker, static 1 KiB file), wrk -t2 with CONNS
# connections, ROUNDS rounds of DURATION seconds in rotating order. Loopback only; ports
# 18871-18876 and 18883-18886; everything runs in its own session and is killed on exit.
#
#   bash bench/workers.sh                       # CONNS=16 ROUNDS=4 DURATION=4
#   CONNS=128 HECATE="dist/hecate" bash bench/workers.sh
#
# Pinned comparison of one build against another (workers: 1 must cost nothing):
#   PINNED=1 BEFORE=/path/to/other/checkout bash bench/workers.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUN="$ROOT/node_modules/.bin/bun"
HECATE=${HECATE:-"$BUN $ROOT/src/main.ts"}
CONNS=${CONNS:-16}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-4}
WORK=$(mktemp -d /tmp/hecate-workers-bench.XXXXXX)
mkdir -p "$WORK/www" "$WORK/tmp"
head -c 1024 /dev/urandom > "$WORK/www/1k"
SIDS=()
cleanup() { for s in "${SIDS[@]}"; do kill -- "-$s" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cat > "$WORK/up.conf" <<CONF
worker_processes 1; daemon off; master_process on; user root; pid $WORK/up.pid; error_log $WORK/up.err warn;
events { worker_connections 8192; multi_accept on; }
http { access_log off; sendfile on; tcp_nodelay on; etag off; keepalive_timeout 300s; keepalive_requests 100000000;
  client_body_temp_path $WORK/tmp/ua; proxy_temp_path $WORK/tmp/ub; fastcgi_temp_path $WORK/tmp/uc; uwsgi_temp_path $WORK/tmp/ud; scgi_temp_path $WORK/tmp/ue;
  server { listen 127.0.0.1:18871 backlog=4096; root $WORK/www; location / { } } }
CONF
cat > "$WORK/np.conf" <<CONF
worker_processes 2; daemon off; master_process on; user root; pid $WORK/np.pid; error_log $WORK/np.err warn;
events { worker_connections 8192; multi_accept on; }
http { access_log off; keepalive_timeout 300s; keepalive_requests 100000000;
  client_body_temp_path $WORK/tmp/na; proxy_temp_path $WORK/tmp/nb; fastcgi_temp_path $WORK/tmp/nc; uwsgi_temp_path $WORK/tmp/nd; scgi_temp_path $WORK/tmp/ne;
  upstream origin { server 127.0.0.1:18871; keepalive 512; keepalive_requests 100000000; keepalive_timeout 300s; }
  server { listen 127.0.0.1:18872 backlog=4096; location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host; proxy_buffers 16 8k; } } }
CONF
conf() { # port admin workers  (the request path of bench/hecate.sh)
  cat <<YAML
admin: { listen: "127.0.0.1:$2" }
proxy:
  listen: "127.0.0.1:$1"
  workers: $3
  health: { intervalSec: 5, path: /1k }
  retry: { maxRetries: 2, perTryTimeoutSec: 5 }
  circuitBreaker: { openAfterConsecutiveFailures: 5, cooldownSec: 30 }
  routes:
    - { name: static, hosts: ["static.bench.local"], pathPrefix: /assets, upstreams: ["http://127.0.0.1:18871"] }
    - { name: api, hosts: ["*.bench.local"], pathPrefix: /api, stripPrefix: true, upstreams: ["http://127.0.0.1:18871"] }
    - { name: bench, hosts: ["bench.local"], upstreams: ["http://127.0.0.1:18871"], lb: { algorithm: round_robin } }
    - { name: fallback, upstreams: ["http://127.0.0.1:18871"] }
telemetry: { accessLog: false, logLevel: warn }
YAML
}
start() { # name cpus cmd...  → session id in SID
  local name=$1 cpus=$2; shift 2
  if [ -n "$cpus" ]; then setsid taskset -c "$cpus" "$@" > "$WORK/$name.log" 2>&1 & else setsid "$@" > "$WORK/$name.log" 2>&1 & fi
  SID=$!; SIDS+=("$SID")
}
cpu() { local t=0 a b; for p in $(ps -o pid= --sid "$1"); do read -r a b < <(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null || echo "0 0"); t=$((t + a + b)); done; echo $t; }
run() { # label port sid wrk-cpus
  local c0 c1 out rps n
  c0=$(cpu "$3")
  if [ -n "$4" ]; then out=$(taskset -c "$4" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -H 'Host: bench.local' "http://127.0.0.1:$2/1k")
  else out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -H 'Host: bench.local' "http://127.0.0.1:$2/1k"); fi
  c1=$(cpu "$3")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out"); n=$(awk '/requests in/ {print $1}' <<<"$out")
  printf '%-22s %10s req/s  %4d µs CPU/req  errors: %s\n' "$1" "$rps" $(( (c1 - c0) * 10000000 / (n > 0 ? n : 1) / 1000 )) "$(grep -c 'Non-2xx\|Socket errors' <<<"$out" || true)"
}

if [ "${PINNED:-}" = 1 ]; then
  # workers: 1, proxy alone on CPU 1, wrk and the upstream on CPU 0: this build vs BEFORE
  [ -n "${BEFORE:-}" ] || { echo "PINNED=1 needs BEFORE=<other checkout>" >&2; exit 2; }
  THREADS=1
  start up 0 nginx -c "$WORK/up.conf"; UP=$SID
  conf 18873 18883 1 > "$WORK/before.yaml"; conf 18874 18884 1 > "$WORK/after.yaml"
  start before 1 "$BUN" "$BEFORE/src/main.ts" -config="$WORK/before.yaml"; B1=$SID
  start after 1 $HECATE -config="$WORK/after.yaml"; A1=$SID
  sleep 2.5
  for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 0 ]; then run "after (this build)" 18874 $A1 0; run "before ($BEFORE)" 18873 $B1 0
    else run "before ($BEFORE)" 18873 $B1 0; run "after (this build)" 18874 $A1 0; fi
  done
  exit 0
fi

THREADS=2
start up "" nginx -c "$WORK/up.conf"
start nginx "" nginx -c "$WORK/np.conf"; NG=$SID
conf 18875 18885 2 > "$WORK/w2.yaml"; conf 18876 18886 1 > "$WORK/w1.yaml"
start w2 "" $HECATE -config="$WORK/w2.yaml"; W2=$SID
start w1 "" $HECATE -config="$WORK/w1.yaml"; W1=$SID
sleep 2.5
for p in 18872 18875 18876; do wrk -t2 -c"$CONNS" -d2s -H 'Host: bench.local' "http://127.0.0.1:$p/1k" > /dev/null; done
echo "unpinned, wrk -t2 -c$CONNS, ${DURATION}s per run, $(nproc) CPUs"
for r in $(seq 1 "$ROUNDS"); do
  case $((r % 3)) in
    1) run "nginx (2 workers)" 18872 $NG ""; run "hecate workers: 2" 18875 $W2 ""; run "hecate workers: 1" 18876 $W1 "" ;;
    2) run "hecate workers: 2" 18875 $W2 ""; run "hecate workers: 1" 18876 $W1 ""; run "nginx (2 workers)" 18872 $NG "" ;;
    0) run "hecate workers: 1" 18876 $W1 ""; run "nginx (2 workers)" 18872 $NG ""; run "hecate workers: 2" 18875 $W2 "" ;;
  esac
done
