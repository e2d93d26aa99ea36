#!/usr/bin/env bash
# Set up everything envpack's example and tests need on a fresh Debian machine:
# the real Work Queue worker and binding (apt), the namespace tools the tests isolate workers with
# (unshare, mount, ip), and a venv at .venv with envpack and its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

need_apt=()
command -v work_queue_worker >/dev/null || need_apt+=(coop-computing-tools)
[ -e /usr/lib/python3/dist-packages/work_queue.py ] \
  || need_apt+=(python3-workqueue)
command -v dash >/dev/null || need_apt+=(dash)
command -v gcc >/dev/null || need_apt+=(gcc)
# unshare --net/--mount, flock, mount and `ip link set lo up` for the TaskVine and hidden-Python tests
{ command -v unshare && command -v flock; } >/dev/null || need_apt+=(util-linux)
command -v mount >/dev/null || need_apt+=(mount)
{ command -v ip || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ]; } >/dev/null || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "setup: apt-get install ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
