#!/usr/bin/env bash
# Set up (if needed) and run every test: unit tests, notebook hygiene, and nbval over every lesson
# and every solution notebook. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONHASHSEED=0
exec .venv/bin/python -m pytest tests notebooks solutions \
  --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
  --nbval-cell-timeout 600 "$@"
