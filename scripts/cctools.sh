#!/usr/bin/env bash
# Print the prefix of a real TaskVine (vine_worker, ndcctools.taskvine) for the tests, built from
# the cctools source in ../shared when the repo's parent holds shared/ (as on this project's
# machines and in CI). Without ../shared/tools/build-cctools.sh: print nothing, exit 0 (the TaskVine
# tests then skip, unless ENVPACK_CCTOOLS names another install, e.g. conda-forge's ndcctools).
# The build is idempotent: once done (5-7 min on 2 cores), this returns at once. A failed build
# exits non-zero with the build log's tail on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
build=../shared/tools/build-cctools.sh
[ -f "$build" ] || exit 0
# The bindings are for the interpreter the tests' manager runs with (the .venv's, Python 3.11).
prefix=$(bash "$build" python3.11 | tail -n 1)
if [ ! -x "$prefix/bin/vine_worker" ]; then
  echo "cctools: $build printed '$prefix', which has no bin/vine_worker" >&2
  exit 1
fi
echo "$prefix"
