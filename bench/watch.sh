#!/usr/bin/env bash
# What `gwdoctor watch` costs while it works: RSS and CPU of the watch process with 10 targets
# probed every second (10 local upstreams: one nginx with 10 loopback listeners answering 200)
# and 1,000 log lines/s appended (900 access-log lines, 100 error-log lines naming upstream
# causes), for DURATION seconds (default 60).
# Targets: RSS under 30 MB, CPU under 2 % of one core.
# Needs: nginx, python3 (and openssl with SCHEME=https). Builds the release binary first.
#   bench/watch.sh [DURATION]
#   SCHEME=https bench/watch.sh      the 10 targets over TLS (a CA made for the run, --ca-file):
#                                    a full handshake per probe, as watch makes them
#   GWDOCTOR_BIN=path bench/watch.sh measure that binary instead (no build), e.g. to compare
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-60}
scheme=${SCHEME:-http}
if [ -n "${GWDOCTOR_BIN:-}" ]; then
  bin=$GWDOCTOR_BIN
else
  cargo build --release --quiet
  bin=${CARGO_TARGET_DIR:-target}/release/gwdoctor
fi
dir=$(mktemp -d /tmp/gwdoctor-watch-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$dir"
}
trap cleanup EXIT

# 10 upstreams: ports on 127.0.0.1 that nothing else uses (picked by the kernel).
ports=$(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(10)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)
mkdir -p "$dir/tmp"
listen_opts=""
tls_conf=""
ca_args=()
if [ "$scheme" = https ]; then
  # A CA and a leaf for 127.0.0.1 (P-256), valid for the run only.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj /CN=gwdoctor-bench-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/leaf.key" -out "$dir/leaf.csr" -subj /CN=127.0.0.1 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' >"$dir/leaf.ext"
  openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/leaf.ext" -out "$dir/leaf.pem" 2>/dev/null
  listen_opts=" ssl"
  tls_conf="ssl_certificate $dir/leaf.pem; ssl_certificate_key $dir/leaf.key;"
  ca_args=(--ca-file "$dir/ca.pem")
fi
{
  echo "worker_processes 1; pid $dir/nginx.pid; error_log $dir/nginx-error.log warn; daemon on;"
  [ "$(id -u)" = 0 ] && echo "user www-data www-data;"
  echo "events { worker_connections 256; }"
  echo "http { access_log off; client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp;"
  echo "  fastcgi_temp_path $dir/tmp; uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;"
  for p in $ports; do echo "  server { listen 127.0.0.1:$p$listen_opts; $tls_conf location / { return 200 \"ok\\n\"; } }"; done
  echo "}"
} >"$dir/nginx.conf"
nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log"
: >"$dir/access.log"
: >"$dir/error.log"

urls=()
for p in $ports; do urls+=("$scheme://127.0.0.1:$p/"); done
"$bin" watch "${urls[@]}" "${ca_args[@]}" --interval 1s --listen 127.0.0.1:0 \
  --access-log "$dir/access.log" --error-log "$dir/error.log" 2>"$dir/watch.err" &
watch_pid=$!
pids+=("$watch_pid")

# 1,000 lines/s, written in batches of 100 every 100 ms.
python3 - "$dir" "$duration" <<'PY' &
import sys, time
d, duration = sys.argv[1], float(sys.argv[2]) + 5
access = open(f"{d}/access.log", "a", buffering=1)
error = open(f"{d}/error.log", "a", buffering=1)
n = 0
start = time.time()
while time.time() - start < duration:
    t = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    et = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime())
    lines = []
    for i in range(90):
        status = 502 if (n + i) % 50 == 0 else 200
        lines.append(f'203.0.113.{i} - - [{t}] "GET /item/{n + i} HTTP/1.1" {status} 512 "-" "bench"\n')
    access.write("".join(lines))
    elines = []
    for i in range(10):
        elines.append(f'{et} [error] 812#812: *{n + i} connect() failed (111: Connection refused) while connecting to upstream, client: 203.0.113.9, server: shop, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:9000/", host: "shop"\n')
    error.write("".join(elines))
    n += 100
    time.sleep(max(0.0, start + n / 1000 - time.time()))
PY
pids+=($!)

sleep 3 # start-up is not the steady state
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$watch_pid/stat"; }
c0=$(cpu); t0=$(date +%s.%N)
max_rss=0
for _ in $(seq "$duration"); do
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$watch_pid/status")
  [ "$rss" -gt "$max_rss" ] && max_rss=$rss
  sleep 1
done
c1=$(cpu); t1=$(date +%s.%N)
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$watch_pid/status")
addr=$(grep -o 'http://[0-9.:]*/' "$dir/watch.err" | head -1)
metrics=$(python3 -c "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1] + 'metrics', timeout=5).read().decode())" "$addr")
lines=$(echo "$metrics" | awk '/^gwdoctor_log_lines_total/ {s += $2} END {print s + 0}')
probes=$(echo "$metrics" | awk '/^gwdoctor_probe_duration_seconds_count.*phase="total"/ {s += $2} END {print s + 0}')
failures=$(echo "$metrics" | awk '/^gwdoctor_probe_failures_total/ {s += $2} END {print s + 0}')
python3 - "$c0" "$c1" "$t0" "$t1" "$ticks" "$max_rss" "$hwm" "$lines" "$probes" "$duration" "$scheme" "$failures" <<'PY'
import sys
c0, c1, t0, t1, ticks, rss, hwm, lines, probes, duration, scheme, failures = sys.argv[1:]
cpu = (float(c1) - float(c0)) / float(ticks) / (float(t1) - float(t0)) * 100
print(f"gwdoctor watch, 10 {scheme} targets every 1 s, 1000 log lines/s, {duration} s:")
print(f"  CPU {cpu:.2f} % of one core (target < 2 %)")
print(f"  RSS max {int(rss) / 1024:.1f} MB while measured, peak (VmHWM) {int(hwm) / 1024:.1f} MB (target < 30 MB)")
print(f"  read {int(float(lines))} log lines, ran {int(float(probes))} probes since start, {int(float(failures))} failed")
PY
