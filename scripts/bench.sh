#!/usr/bin/env bash
# Benchmarks: prints figures against the engine's targets (plan, plan-noop, overhead, cpu) and
# the shared cache's figure (a second home from a SeaweedFS cache against a cold build, bytes).
# Usage: scripts/bench.sh [plan] [build] [cpu] [cache]   (all by default) | quick-cache (the quick
# profile cold against from the cache, an hour or more; only when named). Needs root, like xlfs build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p xlfs -p xlfs-bench
exec target/release/xlfs-bench "$@"
