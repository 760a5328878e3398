# shellcheck shell=sh
# Lists the complete kept frames. $1 the listing program (collect_list.py), $2 the kept folder, $3 the
# kept-frame id pattern. Input: the ids whose JPEG need not be hashed, one a line.
command -v python3 >/dev/null 2>&1 || { echo "binbot: python3 is not installed, so the kept frames cannot be listed" >&2; exit 3; }
exec python3 -c "$1" "$2" "$3"
