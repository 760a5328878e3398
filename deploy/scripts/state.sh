# shellcheck shell=sh
# What deploy needs to know about a Pi: its user, the bundles folder's links and bundles, /healthz.
# $1 bundles folder, $2 the health program (health.py), $3 health url.
need_python
echo "user $(id -un)"
if [ -d "$1" ]; then
    cd "$1" || { echo "binbot: cannot read $1" >&2; exit 3; }
    for link in current previous; do
        if [ -L "$link" ]; then echo "$link $(readlink "$link")"; fi
    done
    for entry in *; do
        if [ -d "$entry" ] && [ ! -L "$entry" ]; then echo "dir $(stat -c %Y -- "$entry") $entry"; fi
    done
fi
echo "health $(python3 -c "$2" "$3" "" "" 0)"
