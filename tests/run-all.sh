#!/usr/bin/env bash
# The whole test suite: unit and integration tests of every crate, then the real-guest boots.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
