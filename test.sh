#!/usr/bin/env bash
# Runs every test of the workspace (unit, end-to-end, CLI).
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-deps.sh
exec cargo test --workspace --locked "$@"
