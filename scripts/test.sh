#!/usr/bin/env bash
# The whole test suite on a fresh clone: set up, lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check envpack tests bench
.venv/bin/ruff format --check envpack tests bench
.venv/bin/mypy
# A real TaskVine for tests/integrations/test_taskvine.py: an ENVPACK_CCTOOLS already set wins;
# else built from ../shared (a failed build stops the run here); else those tests skip.
if [ -z "${ENVPACK_CCTOOLS:-}" ]; then
  cctools=$(./scripts/cctools.sh)
  if [ -n "$cctools" ]; then
    export ENVPACK_CCTOOLS=$cctools
    echo "test: TaskVine from $cctools" >&2
  fi
fi
.venv/bin/pytest -n 2 -q "$@"
