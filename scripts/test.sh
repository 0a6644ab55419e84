#!/usr/bin/env bash
# The test command: installs what the tests need, then runs formatting, lint and the whole test
# suite (unit, integration and end-to-end tests through the real sandbox). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/host-deps.sh test
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo nextest run --workspace --no-fail-fast "$@"
