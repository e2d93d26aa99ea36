#!/usr/bin/env bash
# The whole test suite on a fresh clone: set up, lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check envpack tests bench
.venv/bin/ruff format --check envpack tests bench
.venv/bin/mypy
.venv/bin/pytest -n 2 -q "$@"
