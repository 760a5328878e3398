# shellcheck shell=sh
# Deletes kept frames the workstation has copied and checked. $1 the kept folder, then the ids.
# The sidecar goes first: a frame without one is incomplete, so it is never collected again.
set -e
dir=$1
shift
require_kept_ids "$@"
cd "$dir" || { echo "binbot: cannot enter $dir" >&2; exit 3; }
for id in "$@"; do
    rm -f -- "$id.json"
    rm -f -- "$id.jpg"
done
