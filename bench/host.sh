#!/usr/bin/env bash
# How long `gwdoctor host` takes on this machine, its two samples (200 ms apart) included.
# The target: under 1 s on a normal host. Prints the wall time of each run and the tool's own
# breakdown (steps, in ms) of the last one.
#   bench/host.sh [RUNS]        (default 10; builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/gwdoctor
times=()
for _ in $(seq "$runs"); do
  start=$(date +%s%N)
  "$bin" host --format json >/tmp/gwdoctor-host-bench.json || true   # exit 1 = findings
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000000 )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "gwdoctor host, $runs runs, wall ms: $(echo "$sorted" | tr '\n' ' ')"
echo "  min $(echo "$sorted" | head -1) ms, median $(echo "$sorted" | sed -n "$(( (runs + 1) / 2 ))p") ms, max $(echo "$sorted" | tail -1) ms (target < 1000 ms)"
python3 - <<'PY'
import json
d = json.load(open("/tmp/gwdoctor-host-bench.json"))["host"]
steps = ", ".join(f"{s['name']} {s['ms']}" for s in d["steps"])
print(f"  last run: {d['elapsed_ms']} ms in the tool, {d['sampled_ms']} ms between samples; steps (ms): {steps}")
print(f"  {len(d['processes'])} processes on the request path, {len(d['listeners'])} listeners")
PY
rm -f /tmp/gwdoctor-host-bench.json
