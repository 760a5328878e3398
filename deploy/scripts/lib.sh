# shellcheck shell=sh
# Functions the scripts here share: remote.py puts this file in front of each one it sends.

need_python() {
    command -v python3 >/dev/null 2>&1 || { echo "binbot: python3 is not installed, so /healthz cannot be read" >&2; exit 3; }
}

need_sha256sum() {
    command -v sha256sum >/dev/null 2>&1 || { echo "binbot: sha256sum (coreutils) is not installed" >&2; exit 3; }
}

# Every path a script changes is <bundles folder>/<id>[.partial]: an argument that is not a bundle id
# is refused here too, whatever the workstation checked.
require_ids() {
    for id in "$@"; do
        case $id in
            [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) ;;
            *) printf 'binbot: refusing %s: not a bundle id (12 hex digits)\n' "'$id'" >&2; exit 3 ;;
        esac
    done
}

# check_sums LINES: succeeds if the files in the current folder match LINES (as `sha256sum --check`
# reads them); else fails, printing the names of those that do not.
check_sums() {
    sums=$(printf '%s' "$1" | sha256sum --check --quiet --strict - 2>/dev/null) && return 0
    sums=$(printf '%s\n' "$sums" | sed -n 's/: FAILED.*//p' | tr '\n' ' ')
    printf '%s' "${sums% }"
    return 1
}

# regular_files FILE...: succeeds if each is a regular file in the current folder, not a link; else
# fails, printing the first that is not.
regular_files() {
    for file in "$@"; do
        if [ -L "$file" ] || [ ! -f "$file" ]; then
            printf '%s' "$file"
            return 1
        fi
    done
}

# Every file the collect scripts read or delete is <kept folder>/<id>.jpg or <id>.json: an argument
# that is not a kept-frame id (device/kept.py's KEPT_ID) is refused here too, whatever the workstation checked.
require_kept_ids() {
    for id in "$@"; do
        case $id in
            [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]Z-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) ;;
            *) printf 'binbot: refusing %s: not a kept-frame id (like 20261130T144223123Z-3fa2b1c9)\n' "'$id'" >&2; exit 3 ;;
        esac
    done
}
