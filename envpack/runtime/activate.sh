# bin/activate of an envpack environment, for shells that source it: poncho_package_run and
# python_package_run (`source ENV/bin/activate ""`), or a user (`. ENV/bin/activate`).
#
# The activation itself is the runner's (.envpack/envpack-run --activate prints it as shell
# code, and links the processor's data files into the current directory), so it is the same as
# `envpack-run -e ENV -- CMD`. The root is found from this file's own path: bash and zsh know it
# when sourcing; other shells must set ENVPACK_PREFIX to the environment first.
if [ -n "${BASH_SOURCE:-}" ]; then
    _ep_act=${BASH_SOURCE%/*}
elif [ -n "${ZSH_VERSION:-}" ]; then
    # shellcheck disable=SC2296  # zsh's own expansion for the sourced file
    _ep_act=${(%):-%x}
    _ep_act=${_ep_act%/*}
else
    _ep_act=${ENVPACK_PREFIX:-.}/bin
fi
_ep_act=$(cd -P -- "$_ep_act/.." 2>/dev/null && pwd -P) &&
    _ep_act=$(sh "$_ep_act/.envpack/envpack-run" --activate -e "$_ep_act") &&
    eval "$_ep_act"
_ep_act_rc=$?
unset _ep_act
[ "$_ep_act_rc" = 0 ]
