#!/usr/bin/env bash
# Times `gwdoctor diagnose` on every lab scenario (the scenario's own waits excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet --example bench_diagnose
