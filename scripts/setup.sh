#!/usr/bin/env bash
# Installs everything formula-gan needs on a Debian machine (Python 3.10+, node
# and npm present). Safe to run again: each step checks before it acts.
#
#   bash scripts/setup.sh          # package, KaTeX, a browser
#
# Environment:
#   PYTHON                 interpreter to install into (default python3)
#   FORMULA_GAN_CHROMIUM   a Chromium/Chrome binary to use instead of looking for one
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
quiet_pip() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# 1. torch. A machine that already has torch keeps it (on a GPU machine that is
#    the CUDA build the user chose); otherwise the pinned release. On the CPU
#    machines this project is developed on, pip resolves that pin to a local
#    CPU wheel; elsewhere it is the normal PyPI build.
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[setup] installing torch==2.13.0"
    quiet_pip torch==2.13.0
fi

# 2. The package itself (editable, so the KaTeX assets beside it are found), the
#    test runner and the onnx extra (ONNX Runtime: --engine onnx, and its tests run
#    in CI). Where no onnxruntime wheel exists for the machine, the package goes in
#    without it (--engine onnx then says how to get it). Skipped when setup.cfg has
#    not changed since the last run.
stamp=".setup-stamp"
want="$(sha256sum setup.cfg pyproject.toml | sha256sum | cut -c1-16)-$("$PY" -c 'import sys; print(sys.executable)')"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$PY" -c "import formula_gan" >/dev/null 2>&1; then
    echo "[setup] installing formula-gan and its dependencies"
    if ! quiet_pip -e ".[test,onnx]"; then
        echo "[setup] no onnx/onnxruntime for this machine: installing without the onnx extra" >&2
        quiet_pip -e ".[test]"
    fi
    echo "$want" > "$stamp"
fi

# 3. KaTeX, pinned by katex_render/package-lock.json.
want_katex=$(node -p "require('./katex_render/package-lock.json').packages['node_modules/katex'].version")
have_katex=$(node -p "require('./katex_render/node_modules/katex/package.json').version" 2>/dev/null || true)
if [ "$want_katex" != "$have_katex" ]; then
    echo "[setup] installing KaTeX $want_katex from the lock file"
    npm ci --prefix katex_render --no-audit --no-fund --loglevel=error
fi

# 4. A browser: FORMULA_GAN_CHROMIUM, a system Chromium, or a Playwright-managed
#    one. When none is there, install Debian's chromium (needs root and apt).
if ! "$PY" -m katex_render.browser --check >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "[setup] installing Debian's chromium"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
    else
        echo "[setup] no Chromium found and cannot install one (need root and apt-get)." >&2
        echo "        Install chromium, or run 'python -m playwright install chromium', or set FORMULA_GAN_CHROMIUM." >&2
        exit 1
    fi
    "$PY" -m katex_render.browser --check
fi
echo "[setup] ready"
