# shellcheck shell=sh
# $1 bundles folder, $2 the id `current` is to name, $3 the id for `previous` ("" removes the link).
# previous first: if this stops half-way, current still names a complete bundle.
set -e
require_ids "$2"
if [ -n "$3" ]; then require_ids "$3"; fi
cd "$1"
[ -d "$2" ] || { echo "binbot: $1/$2 is not there" >&2; exit 3; }
point() {
    if [ -z "$2" ]; then rm -f "$1"; return; fi
    ln -sfn "$2" "$1.new"
    mv -T "$1.new" "$1"
}
point previous "$3"
point current "$2"
