#!/usr/bin/env bash
# Benchmark of `gwdoctor probe` against a local nginx (its own prefix, on 127.0.0.1 only):
#
#  1. one probe's wall time vs `curl -s -o /dev/null` for the same URL, median over RUNS runs each
#     (interleaved, so both see the same machine); the target is a ratio within 1.2;
#  2. `--count 2000 --concurrency 50`: wall time, rate, latency percentiles and the tool's own
#     overhead (CPU time per request, peak memory) as the probe reports them.
#
# Usage: bench/probe.sh [RUNS]          (default 50; needs nginx, curl, python3)
# The nginx is started here and stopped by its pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${1:-50}"
COUNT="${COUNT:-2000}"
CONCURRENCY="${CONCURRENCY:-50}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET_DIR/release/gwdoctor"

for tool in nginx curl python3; do
  command -v "$tool" >/dev/null || { echo "bench/probe.sh: $tool is not installed" >&2; exit 2; }
done
cargo build --release --quiet
[ -x "$BIN" ] || { echo "bench/probe.sh: no $BIN after the build" >&2; exit 3; }

# A free port on 127.0.0.1 (bound and released).
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
PREFIX="$(mktemp -d /tmp/gwdoctor-bench-XXXXXX)"
NGINX_PID=""
cleanup() {
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
  rm -rf "$PREFIX"
}
trap cleanup EXIT

mkdir -p "$PREFIX/tmp"
cat >"$PREFIX/nginx.conf" <<EOF
worker_processes 1;
pid $PREFIX/nginx.pid;
error_log $PREFIX/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $PREFIX/tmp/body;
  proxy_temp_path $PREFIX/tmp/proxy;
  fastcgi_temp_path $PREFIX/tmp/fastcgi;
  uwsgi_temp_path $PREFIX/tmp/uwsgi;
  scgi_temp_path $PREFIX/tmp/scgi;
  server {
    listen 127.0.0.1:$PORT;
    location / { return 200 "ok\n"; }
  }
}
EOF
nginx -p "$PREFIX" -c "$PREFIX/nginx.conf" -e "$PREFIX/error.log" -g 'daemon off;' &
NGINX_PID=$!
URL="http://127.0.0.1:$PORT/"
for _ in $(seq 1 100); do
  curl -s -o /dev/null "$URL" && break
  sleep 0.05
done
curl -sf -o /dev/null "$URL" || { echo "bench/probe.sh: nginx did not come up" >&2; cat "$PREFIX/error.log" >&2; exit 3; }

echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') on $URL (pid $NGINX_PID); $RUNS runs each"

# 1. One probe vs one curl, interleaved; wall time in microseconds.
now_us() { local t="$EPOCHREALTIME"; echo "${t/./}"; }
: >"$PREFIX/probe.times"; : >"$PREFIX/curl.times"
for _ in 1 2 3; do "$BIN" probe "$URL" >/dev/null; curl -s -o /dev/null "$URL"; done   # warm caches
for _ in $(seq 1 "$RUNS"); do
  t0=$(now_us); "$BIN" probe "$URL" >/dev/null; t1=$(now_us)
  echo $((t1 - t0)) >>"$PREFIX/probe.times"
  t0=$(now_us); curl -s -o /dev/null "$URL"; t1=$(now_us)
  echo $((t1 - t0)) >>"$PREFIX/curl.times"
done
python3 - "$PREFIX/probe.times" "$PREFIX/curl.times" <<'EOF'
import statistics, sys
probe = [int(x) / 1000 for x in open(sys.argv[1])]
curl = [int(x) / 1000 for x in open(sys.argv[2])]
mp, mc = statistics.median(probe), statistics.median(curl)
print(f"one request:  gwdoctor probe median {mp:.2f} ms (min {min(probe):.2f})   "
      f"curl median {mc:.2f} ms (min {min(curl):.2f})")
verdict = "within" if mp / mc <= 1.2 else "NOT within"
print(f"ratio probe/curl = {mp / mc:.2f} ({verdict} the 1.2 target)")
EOF

# 2. A repeated run, and what the tool itself cost.
t0=$(now_us)
"$BIN" probe "$URL" --count "$COUNT" --concurrency "$CONCURRENCY" --format json >"$PREFIX/run.json" || true
t1=$(now_us)
python3 - "$PREFIX/run.json" $((t1 - t0)) "$COUNT" "$CONCURRENCY" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
stats = report["probe"]["stats"]
process_ms = int(sys.argv[2]) / 1000
lat, over = stats["latency"], stats["overhead"]
print(f"--count {sys.argv[3]} --concurrency {sys.argv[4]}: {stats['healthy']}/{stats['requests']} healthy, "
      f"statuses {stats['statuses']}, failures {stats['failures']}")
print(f"  requests' wall {stats['wall_ms']:.0f} ms ({stats['rate_per_s']}/s), whole process {process_ms:.0f} ms")
print(f"  latency p50 {lat['p50_ms']:.2f} ms  p95 {lat['p95_ms']:.2f} ms  p99 {lat['p99_ms']:.2f} ms  max {lat['max_ms']:.2f} ms")
print(f"  overhead: CPU {over['cpu_ms']:.0f} ms in all, {over['cpu_per_request_us']:.0f} µs per request, "
      f"peak memory {over['max_rss_kib'] / 1024:.1f} MiB")
EOF
