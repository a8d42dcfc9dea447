#!/usr/bin/env bash
# Installs what a fresh Debian machine with the Rust toolchain lacks for
# Centinela: Debian's chromium and chromium-headless-shell (the webjs engine
# and the browser tests), and Node.js with the npm packages of the
# whatsapp-web.js conformance test.
# Idempotent; called by ./serve.sh and ./test.sh.
set -euo pipefail

chromium_path="${CENTINELA__ENGINE__CHROMIUM_PATH:-/usr/bin/chromium}"
shell_path="${CENTINELA__ENGINE__HEADLESS_SHELL_PATH:-/usr/bin/chromium-headless-shell}"
if [ ! -x "$chromium_path" ] || [ ! -x "$shell_path" ]; then
  echo "ensure-deps: installing Debian's chromium and chromium-headless-shell" >&2
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "ensure-deps: need root or sudo to install chromium" >&2; exit 1; }
    sudo_cmd="sudo"
  fi
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y chromium chromium-headless-shell
fi

command -v cargo >/dev/null 2>&1 || { echo "ensure-deps: cargo not found; install the Rust toolchain (rustup)" >&2; exit 1; }

# Node.js and the npm packages of the whatsapp-web.js conformance test
# (tests/conformance/wwebjs): the unmodified library run against the simulator.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "ensure-deps: installing Debian's nodejs and npm" >&2
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "ensure-deps: need root or sudo to install nodejs" >&2; exit 1; }
    sudo_cmd="sudo"
  fi
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y nodejs npm
fi

wwebjs_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/conformance/wwebjs"
if [ ! -f "$wwebjs_dir/node_modules/whatsapp-web.js/package.json" ]; then
  echo "ensure-deps: installing the npm packages of $wwebjs_dir (npm ci, no browser download)" >&2
  (cd "$wwebjs_dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi
