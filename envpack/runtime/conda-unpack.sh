#!/bin/sh
# bin/conda-unpack of an envpack environment: what poncho_package_run and python_package_run
# call after their own untar. An envpack environment is relocatable by construction, so there
# is nothing to rewrite; what remains is the check their untar does not make: the tree against
# its manifest (the runner's own --check), so a corrupt download fails here, not in the task.
_ep_root=$(cd -P -- "$(dirname -- "$0")/.." 2>/dev/null && pwd -P) || {
    printf 'conda-unpack: error: cannot find the environment root from %s\n' "$0" >&2
    exit 66
}
exec sh "$_ep_root/.envpack/envpack-run" --check -e "$_ep_root"
