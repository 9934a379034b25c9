#!/usr/bin/env bash
# Set up (if needed) and run the whole course headless: every lesson notebook is executed top to
# bottom; the executed copies and their figures land in build/. Set VLA_FULL=1 for full settings.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/run_course.py "$@"
