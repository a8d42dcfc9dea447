#!/usr/bin/env bash
# Installs what a fresh Debian machine with the Rust toolchain lacks for
# Centinela: Debian's chromium and chromium-headless-shell (the webjs engine
# and the browser tests), Node.js with the npm packages of the
# whatsapp-web.js conformance test, and Python with the pinned packages of
# the generated-client test.
# Idempotent; called by ./serve.sh and ./test.sh.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"

# apt_install WHAT PACKAGE...: Debian's packages, as root or through sudo.
apt_install() {
  local what="$1"
  shift
  echo "ensure-deps: installing Debian's $what" >&2
  local sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "ensure-deps: need root or sudo to install $what" >&2; exit 1; }
    sudo_cmd="sudo"
  fi
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y "$@"
}

chromium_path="${CENTINELA__ENGINE__CHROMIUM_PATH:-/usr/bin/chromium}"
shell_path="${CENTINELA__ENGINE__HEADLESS_SHELL_PATH:-/usr/bin/chromium-headless-shell}"
if [ ! -x "$chromium_path" ] || [ ! -x "$shell_path" ]; then
  apt_install "chromium and chromium-headless-shell" chromium chromium-headless-shell
fi

command -v cargo >/dev/null 2>&1 || { echo "ensure-deps: cargo not found; install the Rust toolchain (rustup)" >&2; exit 1; }

# Node.js and the npm packages of the whatsapp-web.js conformance test
# (tests/conformance/wwebjs): the unmodified library run against the simulator.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install "nodejs and npm" nodejs npm
fi

wwebjs_dir="$root/tests/conformance/wwebjs"
if [ ! -f "$wwebjs_dir/node_modules/whatsapp-web.js/package.json" ]; then
  echo "ensure-deps: installing the npm packages of $wwebjs_dir (npm ci, no browser download)" >&2
  (cd "$wwebjs_dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

# Python and the pinned PyPI packages of the generated-client test
# (tests/openapi_client): openapi-python-client and what it generates with.
client_dir="$root/tests/openapi_client"
if [ ! -x "$client_dir/.venv/bin/openapi-python-client" ]; then
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv --help >/dev/null 2>&1; then
    apt_install "python3 and python3-venv" python3 python3-venv
  fi
  echo "ensure-deps: installing the PyPI packages of $client_dir (pinned)" >&2
  rm -rf "$client_dir/.venv"
  python3 -m venv "$client_dir/.venv"
  "$client_dir/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$client_dir/requirements.txt"
fi

# Debian's nginx, for the reverse-proxy test (tests/reverse_proxy.rs runs the
# README's recipe in front of the service; it starts its own nginx).
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  apt_install "nginx" nginx
fi

# Debian's PostgreSQL server binaries, for the fleet tests (fleet/tests):
# each test starts its own throwaway cluster with initdb and pg_ctl, which
# Debian keeps in /usr/lib/postgresql/<version>/bin, off PATH. The package
# also creates the `postgres` user the tests run the server as under root.
pg_found() {
  local bin
  for bin in /usr/lib/postgresql/*/bin; do
    [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && return 0
  done
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1
}
if ! pg_found; then
  apt_install "postgresql" postgresql
fi
