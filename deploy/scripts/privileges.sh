# shellcheck shell=sh
# Runs script $2 with the privileges sudo mode $1 asks for, passing it the arguments after those:
# auto uses `sudo -n` unless already root. Sent as it is (without lib.sh) to the login shell as one
# `sh -c`, so a Pi user whose shell is not POSIX still works.
mode=$1 script=$2
shift 2
if [ "$mode" = never ] || { [ "$mode" = auto ] && [ "$(id -u)" -eq 0 ]; }; then
    exec sh -c "$script" binbot "$@"
fi
command -v sudo >/dev/null 2>&1 || { echo "binbot: sudo is not installed (with --sudo never, $(id -un) changes the files itself)" >&2; exit 3; }
exec sudo -n sh -c "$script" binbot "$@"
