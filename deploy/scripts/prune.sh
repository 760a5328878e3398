# shellcheck shell=sh
# $1 bundles folder, then the ids to delete. Uploads cut off over an hour ago go too.
set -e
cd "$1"
shift
require_ids "$@"
for id in "$@"; do rm -rf -- "$id"; done
find . -maxdepth 1 -name '*.partial' -type d -mmin +60 -exec rm -rf -- {} +
