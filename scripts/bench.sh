#!/usr/bin/env bash
# Benchmarks: prints figures against the engine's targets (plan, plan-noop, overhead, cpu).
# Usage: scripts/bench.sh [plan] [build] [cpu]   (all by default). Needs root, like xlfs build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p xlfs -p xlfs-bench
exec target/release/xlfs-bench "$@"
