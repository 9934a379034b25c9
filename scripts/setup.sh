#!/usr/bin/env bash
# Set up VLA Lessons: a virtual environment at .venv/ with everything the course needs.
# Safe to run again: it reinstalls only when pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'; then
  echo "VLA Lessons needs Python 3.11 or 3.12; '$PY' is $("$PY" --version 2>&1)." >&2
  echo "Point PYTHON at a suitable interpreter, e.g. PYTHON=python3.11 bash scripts/setup.sh" >&2
  exit 1
fi

# Headless Linux only (a server, CI): MuJoCo renders offscreen through EGL (OSMesa as fallback).
# On a laptop with a display, or without root, this step is skipped.
if [ "$(uname -s)" = Linux ] && [ -z "${DISPLAY:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  for pkg in libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    echo "== installing Debian packages for headless rendering:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.vla-lessons-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing the course into .venv/ (a few minutes the first time)"
  # torch first, from the exact pin: a CPU build where one is available.
  .venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
  .venv/bin/python - <<'PY'
import torch, sys
if not torch.__version__.startswith("2.13.0"):
    sys.exit(f"torch {torch.__version__} was installed, expected 2.13.0: check constraints.txt")
PY
  echo "$want" > "$stamp"
fi
echo "== environment ready: .venv/ ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
