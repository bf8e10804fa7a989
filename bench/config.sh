#!/usr/bin/env bash
# Benchmark of `gwdoctor config`'s parser and model against crossplane and `nginx -t`, side by
# side on one generated configuration: 2,000 server blocks in 200 included files (~64k lines,
# bench/config-gen.py), which `nginx -t` accepts.
#
# Measured, RUNS times each, interleaved (so a busy machine slows all of them alike), medians:
# - gwdoctor parse + model: reading, parsing, following includes and building the model with
#   nginx's inheritance, as `gwdoctor config` measures it in-process (its "parse" check);
# - gwdoctor config: the whole command (`--no-live --no-nginx-t --format json`: also the static
#   checks and the JSON of 6,000 targets), wall and CPU time;
# - gwdoctor config --format crossplane: the same parse printed as crossplane's JSON;
# - crossplane parse (PyPI's crossplane), and nginx -t -p DIR -c FILE: wall and CPU time.
#
# Needs: a release build (cargo build --release), python3, crossplane (pip install crossplane),
# nginx. Usage: bench/config.sh [RUNS]   (GWDOCTOR=path/to/gwdoctor to pick the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
BIN=${GWDOCTOR:-${CARGO_TARGET_DIR:-target}/release/gwdoctor}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
DIR=$(mktemp -d /tmp/gwdoctor-bench-config.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
python3 bench/config-gen.py "$DIR"
CONF="$DIR/nginx.conf"
LINES=$(cat "$CONF" "$DIR"/sites/*.conf "$DIR"/snippets/*.conf | wc -l)
echo "configuration: $(($(ls "$DIR"/sites | wc -l) + 3)) files, $LINES lines, 2000 servers"
HAVE_CROSSPLANE=$(command -v crossplane >/dev/null && echo 1 || echo 0)
HAVE_NGINX=$(command -v nginx >/dev/null && echo 1 || echo 0)
if [ "$HAVE_NGINX" = 1 ] && ! nginx -t -q -p "$DIR/" -c "$CONF" 2>"$DIR/nginx-t.err"; then
  echo "nginx -t refuses the generated configuration:" >&2; cat "$DIR/nginx-t.err" >&2; exit 1
fi

# One timed run: appends "wall user+sys" (seconds) of the command to FILE.
timed() {
  local file=$1; shift
  local TIMEFORMAT='%R %U %S'
  { time "$@" >/dev/null 2>&1; } 2>>"$file.raw" || true
  tail -n 1 "$file.raw" | awk '{printf "%s %.3f\n", $1, $2 + $3}' >>"$file"
}
for _ in $(seq "$RUNS"); do
  timed "$DIR/g" "$BIN" config --no-live --no-nginx-t --format json "$CONF"
  # Written to a file first: a reader started alongside (python) would take a core from the
  # parse it is measuring.
  { "$BIN" config --no-live --no-nginx-t --format json "$CONF" >"$DIR/report.json" || true; }
  python3 -c "import json,sys; print([c['ms'] for c in json.load(sys.stdin)['checks'] if c['name']=='parse'][0] / 1000)" \
    <"$DIR/report.json" >>"$DIR/p"
  timed "$DIR/x" "$BIN" config --format crossplane "$CONF"
  [ "$HAVE_CROSSPLANE" = 1 ] && timed "$DIR/c" crossplane parse "$CONF"
  [ "$HAVE_NGINX" = 1 ] && timed "$DIR/n" nginx -t -p "$DIR/" -c "$CONF"
done
# median of column $2 of file $1, in ms
med() { awk -v c="$2" '{print $c}' "$1" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)] * 1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a / (b > 0 ? b : 0.1)}'; }

P=$(med "$DIR/p" 1); GW=$(med "$DIR/g" 1); GC=$(med "$DIR/g" 2); XW=$(med "$DIR/x" 1)
python3 -c "import json,sys; d=json.load(sys.stdin); print('gwdoctor model:', len(d['servers']), 'servers,', len(d['upstreams']), 'upstreams,', len(d['targets']), 'targets,', len(d['files']), 'files')" \
  < <("$BIN" config --no-live --no-nginx-t --format json "$CONF" || true)
printf '%-44s %9s ms\n' "gwdoctor parse + model (in-process)" "$P"
printf '%-44s %9s ms wall, %s ms CPU\n' "gwdoctor config (whole command)" "$GW" "$GC"
printf '%-44s %9s ms wall\n' "gwdoctor config --format crossplane" "$XW"
if [ "$HAVE_CROSSPLANE" = 1 ]; then
  CW=$(med "$DIR/c" 1); CC=$(med "$DIR/c" 2)
  printf '%-44s %9s ms wall, %s ms CPU\n' "crossplane parse" "$CW" "$CC"
  echo "  vs crossplane: parse + model $(ratio "$CW" "$P")×, whole command $(ratio "$CW" "$GW")× (CPU $(ratio "$CC" "$GC")×), crossplane format $(ratio "$CW" "$XW")×"
  # Each iteration's own ratio (its crossplane run over its parse + model): how much one
  # run's ratio moves with the machine.
  SPREAD=$(paste -d' ' <(awk '{print $1}' "$DIR/c") "$DIR/p" | awk '$2 > 0 {print $1 / $2}' | sort -n |
    awk '{a[NR]=$1} END {if (NR) printf "%.0f× / %.0f× / %.0f×", a[1], a[int((NR+1)/2)], a[NR]}')
  echo "  parse + model, per iteration (min / median / max): $SPREAD"
else
  echo "crossplane: not installed (pip install crossplane)"
fi
if [ "$HAVE_NGINX" = 1 ]; then
  NW=$(med "$DIR/n" 1); NC=$(med "$DIR/n" 2)
  printf '%-44s %9s ms wall, %s ms CPU\n' "nginx -t" "$NW" "$NC"
  echo "  vs nginx -t:   parse + model $(ratio "$NW" "$P")×, whole command $(ratio "$NW" "$GW")× (CPU $(ratio "$NC" "$GC")×)"
else
  echo "nginx: not installed"
fi
echo "(load average while measuring: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores)"
