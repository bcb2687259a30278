#!/usr/bin/env bash
# Run the whole test suite in the project's environment (after scripts/setup.sh test).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest "$@"
