#!/bin/sh
# bin/run_in_env of an envpack environment: the poncho face that TaskVine expects.
#
# TaskVine unpacks a poncho package itself (`tar xf package.tar.gz -C output`), calls
# `output/bin/run_in_env` once with no arguments (initialize), then runs every task as
# `<env>/bin/run_in_env CMD ARGS...`. Both go to the runner shipped in the environment
# (.envpack/envpack-run), so activation and verification exist once: the initializing call
# verifies the unpacked tree against its manifest (TaskVine's own untar checks nothing), and
# a task call activates the environment and execs the command. POSIX sh only.
#
# Exit status: the command's; or the runner's (65 when the tree does not match its manifest,
# 66 when the root cannot be found).

case $0 in
*/*) _ep_self=$0 ;;
*) _ep_self=$(command -v -- "$0") || _ep_self=./$0 ;;
esac
_ep_root=$(cd -P -- "${_ep_self%/*}/.." 2>/dev/null && pwd -P) || {
    printf 'run_in_env: error: cannot find the environment root from %s\n' "$0" >&2
    exit 66
}
[ -f "$_ep_root/.envpack/envpack-run" ] || {
    printf 'run_in_env: error: %s has no .envpack/envpack-run: not a whole envpack environment\n' "$_ep_root" >&2
    exit 66
}
if [ $# -eq 0 ]; then
    exec sh "$_ep_root/.envpack/envpack-run" --check -e "$_ep_root"
fi
exec sh "$_ep_root/.envpack/envpack-run" -e "$_ep_root" -- "$@"
