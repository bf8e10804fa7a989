#!/usr/bin/env bash
# Benchmark of `gwdoctor logs` against its peers, on deterministic inputs, in one run:
#   access log (combined + upstream fields, ~3 % 5xx): gwdoctor vs GoAccess, in lines per second
#   mixed nginx error log: gwdoctor's classification vs `rg -c upstream` and `wc -l`
#   peak RSS of gwdoctor on both.
# Needs: python3, ripgrep, goaccess, GNU time (apt-get install ripgrep goaccess time).
# SIZE_MB (default 1024) sets the size of each input; GOACCESS_MB (default 100) the slice GoAccess
# reads (it manages ~30k lines/s, so the whole GiB would take minutes; throughput is compared).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
GOACCESS_MB=${GOACCESS_MB:-100}
DIR=${BENCH_DIR:-/tmp/gwdoctor-bench}
mkdir -p "$DIR"
for kind in access error; do
  f="$DIR/$kind-$SIZE_MB.log"
  [ -s "$f" ] || python3 bench/gen_logs.py "$kind" "$SIZE_MB" "$f"
done
ACCESS="$DIR/access-$SIZE_MB.log"
ERROR="$DIR/error-$SIZE_MB.log"
SLICE="$DIR/access-slice-$GOACCESS_MB.log"
[ -s "$SLICE" ] || head -c "$((GOACCESS_MB * 1024 * 1024))" "$ACCESS" | sed '$d' > "$SLICE"
# GWDOCTOR=path/to/gwdoctor picks a binary; else the release build of this checkout.
G=${GWDOCTOR:-${CARGO_TARGET_DIR:-target}/release/gwdoctor}
[ -n "${GWDOCTOR:-}" ] || cargo build --release --quiet
FORMAT='$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" upstream_addr="$upstream_addr" upstream_status="$upstream_status" upstream_response_time="$upstream_response_time" request_time=$request_time'
cat "$ACCESS" "$ERROR" "$SLICE" > /dev/null   # warm the page cache for everyone

# seconds and peak RSS (KiB) of a command
measure() { /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -n 1; }
lines() { wc -l < "$1"; }

read -r g_acc g_acc_rss < <(measure "$G" logs --format json --log-format "$FORMAT" "$ACCESS")
read -r g_slice _ < <(measure "$G" logs --format json --log-format "$FORMAT" "$SLICE")
read -r goa _ < <(measure goaccess "$SLICE" --log-format=COMBINED --no-global-config -o "$DIR/report.json")
read -r g_err g_err_rss < <(measure "$G" logs --format json "$ERROR")
read -r rg_err _ < <(measure rg -c upstream "$ERROR")
read -r wc_err _ < <(measure wc -l "$ERROR")

acc_lines=$(lines "$ACCESS"); slice_lines=$(lines "$SLICE"); err_lines=$(lines "$ERROR")
python3 - "$acc_lines" "$g_acc" "$slice_lines" "$g_slice" "$goa" "$err_lines" "$g_err" "$rg_err" "$wc_err" "$g_acc_rss" "$g_err_rss" "$SIZE_MB" <<'PY'
import sys
acc_lines, g_acc, slice_lines, g_slice, goa, err_lines, g_err, rg_err, wc_err, acc_rss, err_rss, size = sys.argv[1:]
acc_lines, slice_lines, err_lines = int(acc_lines), int(slice_lines), int(err_lines)
g_acc, g_slice, goa, g_err, rg_err, wc_err = (max(float(x), 0.001) for x in (g_acc, g_slice, goa, g_err, rg_err, wc_err))
print(f"input: access {size} MiB ({acc_lines} lines), error {size} MiB ({err_lines} lines)")
print(f"access log, gwdoctor (whole file): {g_acc:.2f} s  {acc_lines / g_acc:,.0f} lines/s  {int(size) / g_acc:,.0f} MiB/s")
print(f"access log slice, gwdoctor: {g_slice:.2f} s  {slice_lines / g_slice:,.0f} lines/s")
print(f"access log slice, GoAccess: {goa:.2f} s  {slice_lines / goa:,.0f} lines/s")
print(f"  throughput ratio gwdoctor/GoAccess: {(acc_lines / g_acc) / (slice_lines / goa):.0f}x (target >= 100x)")
print(f"error log, gwdoctor classification: {g_err:.2f} s  ({int(size) / g_err:,.0f} MiB/s)")
print(f"error log, rg -c upstream: {rg_err:.2f} s   wc -l: {wc_err:.2f} s")
print(f"  time ratio gwdoctor/rg: {g_err / rg_err:.2f}x (target <= 2x)")
print(f"peak RSS: access {int(acc_rss) / 1024:.0f} MiB, error {int(err_rss) / 1024:.0f} MiB (target < 200 MiB)")
PY
