#!/usr/bin/env bash
# TLS scan of Hecate's public listener with testssl.sh: protocols and known vulnerabilities.
#
#   bash bench/testssl.sh
#
# Starts the compiled binary (dist/hecate; built with `bun run build` when missing) with a TLS
# config on a free port (listen 127.0.0.1:0, the port is read from Hecate's "listening" log
# line), once per certificate type (RSA 2048 and ECDSA P-256, made with openssl), and runs
#   testssl --protocols --vulnerable --quiet --color 0 --warnings off --jsonfile <file> 127.0.0.1:<port>
# Prints a summary per run: offered protocols and every finding whose severity is not OK/INFO
# (LOW…CRITICAL, or WARN when a check could not run); exits 1 when there is any.
#
# Last run (Bun 1.4.5, testssl 3.0.8, RSA and ECDSA, minVersion 1.2): TLS 1.2 and 1.3 only,
# ALPN h2 + http/1.1, every --vulnerable check "not vulnerable", no findings, ~17 s per run.
# Before src/tls/compile-tls.ts set TLS12_CIPHERS, Bun's default suites (CBC, static RSA) got
# "LUCKY13: potentially vulnerable, uses TLS CBC ciphers" (LOW).
#
# Knobs (env): KEYS="rsa ecdsa" MIN_VERSION=1.2 (tls.minVersion) HECATE_BIN (default dist/hecate,
#   rebuilt when missing or older than a file in src/)
#   WORK (default: a new temp folder) TESTSSL (default: testssl.sh or Debian's `testssl`)
# Needs: testssl.sh (Debian package `testssl.sh`, command `testssl`), openssl, jq.
# One run takes about 1–2 minutes per certificate type: not part of the test suite.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUN=${BUN:-$ROOT/node_modules/.bin/bun}
HECATE_BIN=${HECATE_BIN:-$ROOT/dist/hecate}
read -r -a KEY_TYPES <<< "${KEYS:-rsa ecdsa}"
MIN_VERSION=${MIN_VERSION:-1.2}
WORK=${WORK:-$(mktemp -d /tmp/hecate-testssl-XXXXXX)}
TESTSSL=${TESTSSL:-$(command -v testssl.sh || command -v testssl || true)}

[ -n "$TESTSSL" ] || { echo "missing testssl.sh (apt-get install testssl.sh)"; exit 1; }
for t in openssl jq; do command -v $t > /dev/null || { echo "missing $t"; exit 1; }; done
# build when missing, or when a source file is newer than the binary (the scan must see the
# current TLS settings of src/tls/compile-tls.ts)
if [ "$HECATE_BIN" = "$ROOT/dist/hecate" ] && { [ ! -x "$HECATE_BIN" ] || [ -n "$(find "$ROOT/src" -newer "$HECATE_BIN" -name '*.ts' -print -quit)" ]; }; then
  echo "building $HECATE_BIN"
  (cd "$ROOT" && "$BUN" run build)
fi
[ -x "$HECATE_BIN" ] || { echo "no binary at $HECATE_BIN"; exit 1; }
mkdir -p "$WORK"
echo "work folder: $WORK"

HPID=""
cleanup() { if [ -n "$HPID" ]; then kill "$HPID" 2> /dev/null || true; wait "$HPID" 2> /dev/null || true; fi; }
trap cleanup EXIT

# an upstream is not needed: the scan never gets past the handshake to a route (404 if it did)
status=0
for kt in "${KEY_TYPES[@]}"; do
  dir=$WORK/$kt
  mkdir -p "$dir"
  case $kt in
    rsa) keyopt=(-newkey rsa:2048) ;;
    ecdsa) keyopt=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    *) echo "unknown key type $kt (rsa or ecdsa)"; exit 2 ;;
  esac
  openssl req -x509 "${keyopt[@]}" -nodes -keyout "$dir/key.pem" -out "$dir/cert.pem" -days 30 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2> /dev/null
  cat > "$dir/hecate.yaml" << EOF
admin: { listen: "127.0.0.1:0" }
proxy:
  listen: "127.0.0.1:0"
  enableHTTP3: true
  routes: []
tls:
  certFiles: ["$dir/cert.pem"]
  keyFiles: ["$dir/key.pem"]
  minVersion: "$MIN_VERSION"
telemetry: { accessLog: false, logLevel: info }
EOF
  "$HECATE_BIN" -config="$dir/hecate.yaml" > "$dir/hecate.log" 2>&1 &
  HPID=$!
  port=""
  for _ in $(seq 1 150); do
    port=$(grep -o '"listener":"public","address":"[^"]*"' "$dir/hecate.log" 2> /dev/null | head -1 | sed 's/.*:\([0-9]*\)"$/\1/' || true)
    [ -n "$port" ] && break
    kill -0 "$HPID" 2> /dev/null || { echo "hecate exited:"; cat "$dir/hecate.log"; exit 1; }
    sleep 0.1
  done
  [ -n "$port" ] || { echo "hecate did not report its port"; cat "$dir/hecate.log"; exit 1; }
  echo
  echo "== $kt certificate, minVersion $MIN_VERSION: hecate pid $HPID on 127.0.0.1:$port"
  start=$(date +%s)
  # testssl's exit code counts findings and failed checks: judge by the JSON instead
  "$TESTSSL" --protocols --vulnerable --quiet --color 0 --warnings off --jsonfile "$dir/testssl.json" \
    "127.0.0.1:$port" > "$dir/testssl.txt" 2>&1 || true
  echo "testssl took $(( $(date +%s) - start )) s (full output: $dir/testssl.txt, JSON: $dir/testssl.json)"
  cleanup
  HPID=""
  [ -s "$dir/testssl.json" ] || { echo "no JSON from testssl:"; cat "$dir/testssl.txt"; exit 1; }

  echo "protocols:"
  jq -r '.[] | select(.id | test("^(SSLv2|SSLv3|TLS1|TLS1_1|TLS1_2|TLS1_3|NPN|ALPN|ALPN_HTTP2)$")) | "  \(.id): \(.finding)"' "$dir/testssl.json"
  echo "findings other than OK/INFO:"
  bad=$(jq '[.[] | select(.severity != "OK" and .severity != "INFO")] | length' "$dir/testssl.json")
  if [ "$bad" -gt 0 ]; then
    jq -r '.[] | select(.severity != "OK" and .severity != "INFO") | "  [\(.severity)] \(.id): \(.finding)"' "$dir/testssl.json" | sort -u
    echo "RESULT $kt: $bad finding(s)"
    status=1
  else
    echo "  (none)"
    echo "RESULT $kt: nothing vulnerable, no warnings"
  fi
done
exit $status
