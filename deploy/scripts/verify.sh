# shellcheck shell=sh
# Whether a bundle already on the Pi is intact. $1 bundles folder, $2 id, $3 checksum lines.
need_sha256sum
require_ids "$2"
cd "$1/$2" || exit 3
odd=$(regular_files bundle.json labels.txt model.tflite selftest.npz) || {
    echo "binbot: $1/$2/${odd} is not a regular file (a link?)" >&2; exit 3; }
failed=$(check_sums "$3") || { echo "binbot: $1/$2 does not match its checksums (${failed})" >&2; exit 3; }
