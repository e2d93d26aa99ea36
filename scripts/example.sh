#!/usr/bin/env bash
# The main job on a fresh clone: set up (.venv with envpack, Work Queue from Debian), then
# analyze, build and run two example processors on a local Work Queue worker.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python examples/run_example.py "$@"
