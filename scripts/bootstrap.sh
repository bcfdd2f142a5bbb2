#!/usr/bin/env bash
# Installs what Crucible needs on this machine: system packages (when missing and we may), uv, and
# the locked virtual environment. Safe to run again; does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.9.7"
need_pkgs=()
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v bwrap >/dev/null || need_pkgs+=(bubblewrap)
command -v runuser >/dev/null || need_pkgs+=(util-linux)
# The executor's seccomp filter is compiled by libseccomp (through pyseccomp, over ctypes).
ldconfig -p 2>/dev/null | grep 'libseccomp\.so\.2' >/dev/null || need_pkgs+=(libseccomp2)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need_pkgs+=(postgresql)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
# promtool lints every service's /metrics and checks deploy/prometheus* (tests/test_metrics_e2e.py).
command -v promtool >/dev/null || need_pkgs+=(prometheus)
# The console's browser tests drive the system's headless Chromium through Playwright.
command -v chromium >/dev/null || need_pkgs+=(chromium)

if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing ${need_pkgs[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then
    echo "bootstrap: installing ${need_pkgs[*]} with sudo apt-get"
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "bootstrap: missing system packages: ${need_pkgs[*]}" >&2
    echo "bootstrap: install them (e.g. sudo apt-get install ${need_pkgs[*]}) and run again" >&2
    exit 1
  fi
fi

# A postgres service that apt-get just installed may have started on 5432; Crucible never relies
# on it (tests start a private cluster), and leaves it alone.

if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  echo "bootstrap: installing uv $UV_VERSION into .tools/"
  python3 -m venv .tools
  .tools/bin/pip install -q "uv==$UV_VERSION"
fi

export UV_PYTHON_DOWNLOADS=never
# Compiled once here: every service process a test or `make run` starts then reads the
# cached bytecode, even where PYTHONDONTWRITEBYTECODE is set (it halves each start's CPU).
.tools/bin/uv sync --frozen --all-packages --quiet --compile-bytecode
