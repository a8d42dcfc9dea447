#!/usr/bin/env bash
# Runs Centinela in demo mode on http://127.0.0.1:3012 with data in ./data.
# Extra arguments go to `centinela serve` (e.g. --listen 0.0.0.0:3012 --demo-public:
# other machines then need the control token it prints; see the README).
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-deps.sh
exec cargo run --release --locked --bin centinela -- serve --demo "$@"
