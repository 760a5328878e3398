# shellcheck shell=sh
# Writes a tar of the kept frames named to stdout. $1 the kept folder, then the ids.
# Only a frame whose two files are regular files goes (a symlink named like one is passed over, never
# followed); one deleted since it was listed is left out, and the workstation says so.
dir=$1
shift
require_kept_ids "$@"
cd "$dir" || { echo "binbot: cannot read $dir" >&2; exit 3; }
for id in "$@"; do
    shift
    if [ -f "$id.jpg" ] && [ ! -L "$id.jpg" ] && [ -f "$id.json" ] && [ ! -L "$id.json" ]; then
        set -- "$@" "$id.jpg" "$id.json"
    fi
done
[ $# -gt 0 ] || exit 0
exec tar -c -f - --no-recursion --ignore-failed-read -- "$@"
