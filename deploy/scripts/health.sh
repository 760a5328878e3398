# shellcheck shell=sh
# $1 the health program (health.py), then its arguments: url, the model id awaited, the
# reload_error seen before, seconds to wait.
need_python
exec python3 -c "$1" "$2" "$3" "$4" "$5"
