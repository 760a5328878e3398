# shellcheck shell=sh
# Unpacks a bundle into <id>.partial, checks it, and only then renames it to <id>.
# $1 bundles folder, $2 id, $3 checksum lines. Input: a tar of the bundle's files.
need_sha256sum
set -e
require_ids "$2"
mkdir -p "$1"
cd "$1"
rm -rf "$2.partial"
mkdir "$2.partial"
tar -x --no-same-owner -f - -C "$2.partial" -- bundle.json labels.txt model.tflite selftest.npz
cd "$2.partial"
if ! odd=$(regular_files bundle.json labels.txt model.tflite selftest.npz); then
    cd .. && rm -rf "$2.partial"
    echo "binbot: the upload's ${odd} is not a regular file (a link?); nothing was installed" >&2
    exit 3
fi
if ! failed=$(check_sums "$3"); then
    cd .. && rm -rf "$2.partial"
    echo "binbot: checksum mismatch after upload (${failed:-no readable checksums}); the copy was damaged in transit" >&2
    exit 3
fi
cd ..
if [ -e "$2" ]; then
    rm -rf ".$2.replaced"
    mv -T "$2" ".$2.replaced"
    rm -rf ".$2.replaced"
fi
mv -T "$2.partial" "$2"
