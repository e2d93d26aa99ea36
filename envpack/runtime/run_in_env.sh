#!/bin/sh
# bin/run_in_env of an envpack environment: the poncho face that TaskVine expects.
#
# TaskVine unpacks a poncho package with `tar xf package.tar.gz -C output && output/bin/run_in_env`
# (no arguments: initialize), then runs every task as `<env>/bin/run_in_env CMD ARGS...`.
# The environment root is found from this script's own location; nothing is rewritten, the
# environment being relocatable by construction. POSIX sh only.
#
# Exit status: the command's; or 65 when the environment does not match its .envpack/summary
# (checked on the initializing call), 66 when the root cannot be found.

_ep_prog=run_in_env
case $0 in
*/*) _ep_self=$0 ;;
*) _ep_self=$(command -v -- "$0") || _ep_self=./$0 ;;
esac
_ep_root=$(cd -P -- "${_ep_self%/*}/.." 2>/dev/null && pwd -P) || {
    printf '%s: error: cannot find the environment root from %s\n' "$_ep_prog" "$0" >&2
    exit 66
}

if [ $# -eq 0 ]; then
    # Initialize: the unpacked tree must be whole (TaskVine's own untar does not check it).
    _ep_files=
    _ep_bytes=
    if [ -f "$_ep_root/.envpack/summary" ]; then
        while IFS='=' read -r _ep_k _ep_v || [ -n "$_ep_k" ]; do
            case $_ep_k in
            files) _ep_files=$_ep_v ;;
            bytes) _ep_bytes=$_ep_v ;;
            esac
        done <"$_ep_root/.envpack/summary"
    fi
    if [ -n "$_ep_files" ]; then
        _ep_got_files=$(find "$_ep_root" \( -type f -o -type l \) -printf x | wc -c)
        _ep_got_bytes=$(($(find "$_ep_root" -type f -printf '+%s') + 0))
        if [ "$_ep_got_files" != "$_ep_files" ] || [ "$_ep_got_bytes" != "$_ep_bytes" ]; then
            printf '%s: error: %s holds %s files and %s bytes, its summary says %s files and %s bytes\n' \
                "$_ep_prog" "$_ep_root" "$_ep_got_files" "$_ep_got_bytes" "$_ep_files" "$_ep_bytes" >&2
            exit 65
        fi
    fi
    exit 0
fi

PATH=$_ep_root/bin${PATH:+:$PATH}
PYTHONNOUSERSITE=1
ENVPACK_PREFIX=$_ep_root
export PATH PYTHONNOUSERSITE ENVPACK_PREFIX
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE PYTHONEXECUTABLE PYTHONPLATLIBDIR \
    VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV CONDA_SHLVL CONDA_EXE CONDA_PYTHON_EXE \
    __PYVENV_LAUNCHER__
# Data files the processor opens by relative path: ./P -> ROOT/local/P unless ./P exists.
if [ -f "$_ep_root/.envpack/links" ]; then
    while IFS= read -r _ep_p || [ -n "$_ep_p" ]; do
        case /$_ep_p/ in // | */../* | *//*) continue ;; esac
        case $_ep_p in /*) continue ;; esac
        { [ -e "./$_ep_p" ] || [ -L "./$_ep_p" ]; } && continue
        case $_ep_p in */*) mkdir -p -- "./${_ep_p%/*}" 2>/dev/null ;; esac
        ln -s -- "$_ep_root/local/$_ep_p" "./$_ep_p" 2>/dev/null
    done <"$_ep_root/.envpack/links"
fi
exec "$@"
