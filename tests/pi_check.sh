#!/usr/bin/env bash
# `make pi-check`: proof that the device side installs and runs on a Raspberry Pi's architecture.
#
# Builds a Debian bookworm arm64 root (Raspberry Pi OS bookworm's base, Python 3.11) with debootstrap,
# runs it through qemu-user-static, installs binbot[device] from the checkout into a venv there (pip
# picks the aarch64 wheels of ai-edge-litert, numpy and OpenCV), and runs `binbot bundle inspect`,
# `binbot classify` and a short `binbot run` under emulation. The proof: decoding and resizing the
# photos gives arm64 the very pixels x86 gets, and the emulated classify gives the same labels as this
# machine's, with probabilities within a runtime's rounding, both from the same model-size inputs (the
# runtime alone) and from the image files (the whole path). The Python steps are in tests/pi_check.py.
#
# The root is cached in .cache/pi-check/ (a second run skips debootstrap); delete it to rebuild.
# Needs root (debootstrap, chroot, binfmt_misc). Prints each step's time and PASS or FAIL at the end.
set -euo pipefail

usage() {
  cat <<EOF
usage: sudo tests/pi_check.sh [--bundle DIR] [IMAGE_OR_FOLDER ...]

Without --bundle: .demo/bundle (from \`make demo\`) if it exists, else a small CNN bundle built
here with the workstation venv from generated images (cached in .cache/pi-check/bundle).
Without images: real photos, PI_CHECK_PER_CLASS of each class of ../shared/data/trashnet if it is
there; else .demo/holdout for the demo's bundle; else generated bottle/can/paper images.

Environment (defaults): VENV (.venv, the workstation venv), PI_CHECK_CACHE (.cache/pi-check),
PI_CHECK_MIRROR (http://deb.debian.org/debian), PI_CHECK_CPU (cortex-a72, a Raspberry Pi 4;
cortex-a76 for a Pi 5, cortex-a53 for a Pi 3 or Zero 2 W), PI_CHECK_RUNTIME_TOLERANCE (0.005, the
largest probability difference accepted on identical model-size inputs: about one uint8 output
step), PI_CHECK_TOLERANCE (the runtime tolerance, the same from the image files: each side decodes
and resizes them, bit-exactly alike), PI_CHECK_PHOTOS (../shared/data/trashnet), PI_CHECK_PER_CLASS
(20), PI_CHECK_TIMEOUT (1800, seconds for each emulated command).
EOF
}

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=$(realpath -m "${VENV:-$REPO/.venv}")
CACHE=$(realpath -m "${PI_CHECK_CACHE:-$REPO/.cache/pi-check}")
MIRROR=${PI_CHECK_MIRROR:-http://deb.debian.org/debian}
export QEMU_CPU=${PI_CHECK_CPU:-cortex-a72}  # read by qemu-user on every emulated exec
# What a Pi of that CPU shows in /proc/cpuinfo: implementer, variant, part, revision, features, model.
case $QEMU_CPU in
  cortex-a53) PI_CPUINFO=(0x41 0x0 0xd03 4 "fp asimd evtstrm crc32 cpuid" "Raspberry Pi 3 Model B Rev 1.2") ;;
  cortex-a72) PI_CPUINFO=(0x41 0x0 0xd08 3 "fp asimd evtstrm crc32 cpuid" "Raspberry Pi 4 Model B Rev 1.4") ;;
  cortex-a76) PI_CPUINFO=(0x41 0x4 0xd0b 1 "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" "Raspberry Pi 5 Model B Rev 1.0") ;;
  *) echo "pi_check.sh: error: PI_CHECK_CPU=$QEMU_CPU: expected cortex-a53, cortex-a72 or cortex-a76 (a Pi's CPU)" >&2; exit 2 ;;
esac
RUNTIME_TOLERANCE=${PI_CHECK_RUNTIME_TOLERANCE:-0.005}
TOLERANCE=${PI_CHECK_TOLERANCE:-$RUNTIME_TOLERANCE}
PHOTOS=$(realpath -m "${PI_CHECK_PHOTOS:-$REPO/../shared/data/trashnet}")
PER_CLASS=${PI_CHECK_PER_CLASS:-20}
TIMEOUT=${PI_CHECK_TIMEOUT:-1800}
ROOT=$CACHE/bookworm-arm64
WORK=$ROOT/pi-check  # inside the root: the bundle, images and results of this run
BUNDLE="" IMAGES=()

while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --bundle) BUNDLE=${2:?--bundle needs a folder}; shift 2 ;;
    -*) echo "pi_check.sh: error: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) IMAGES+=("$1"); shift ;;
  esac
done

# --- steps, their times, and the summary printed however the script ends --------------------------
STEP="" STEP_START=0 CHECK_START=$(date +%s.%N)
declare -a TIMES=() MOUNTS=()

begin() { STEP=$1; STEP_START=$(date +%s.%N); echo; echo "== $STEP"; }
end() { TIMES+=("$(printf '%-28s %8.1f s  %s' "$STEP" "$(elapsed "$STEP_START")" "${1:-}")"); STEP=""; }
elapsed() { awk -v now="$(date +%s.%N)" -v start="$1" 'BEGIN { printf "%.1f", now - start }'; }
die() { echo "pi_check.sh: error: $*" >&2; exit 1; }

mount_in_root() {  # mount_in_root PATH MOUNT_ARGS...: mount at $ROOT/PATH, remembered for unmount_all
  local target=$ROOT/$1
  shift
  mount "$@" "$target"
  MOUNTS+=("$target")
}

unmount_all() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" || echo "warning: could not unmount ${MOUNTS[i]}" >&2
  done
  MOUNTS=()
}

summary() {
  local status=$?
  unmount_all
  echo
  echo "== pi-check summary (emulated CPU $QEMU_CPU)"
  local line
  for line in "${TIMES[@]}"; do echo "  $line"; done
  printf '  %-28s %8.1f s\n' "total" "$(elapsed "$CHECK_START")"
  if ((status == 0)); then
    echo "PASS: binbot[device] installs and classifies on arm64 (Debian bookworm, Python 3.11), matching x86"
  else
    echo "FAIL${STEP:+ in step '$STEP'} (exit $status)"
  fi
}
trap summary EXIT

# A root must never be deleted while something is mounted inside it (a bound /dev would go with it).
remove_root() {
  [[ -e $1 ]] || return 0
  if findmnt -rn -o TARGET | grep -q "^$1/"; then
    die "$1 has file systems mounted inside; unmount them (findmnt | grep $1) before rebuilding"
  fi
  rm -rf --one-file-system "$1"
}

in_root() {  # run a command in the arm64 root with a clean environment, under a time limit
  local passed=() name
  for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL PIP_EXTRA_INDEX_URL; do
    [[ -n ${!name:-} ]] && passed+=("$name=${!name}")
  done
  timeout "$TIMEOUT" chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU" \
    PATH=/opt/binbot/venv/bin:/usr/local/bin:/usr/bin:/bin PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/pi-check-host.crt "${passed[@]}" "$@" ||
    { local status=$?; ((status != 124)) || echo "pi_check.sh: error: $1 timed out after $TIMEOUT s" >&2; return $status; }
}

[[ $(id -u) == 0 ]] || die "needs root for debootstrap, chroot and binfmt_misc: sudo make pi-check"
[[ -x $VENV/bin/binbot ]] || die "$VENV/bin/binbot not found: run make install first (make pi-check does)"
[[ -z $BUNDLE || -d $BUNDLE ]] || die "$BUNDLE: no such bundle folder"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -n 9 || die "another pi-check is using $CACHE"

# --- host tools ---------------------------------------------------------------------------------------
begin "host packages"
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
[[ -x /usr/bin/qemu-aarch64-static ]] || missing+=(qemu-user-static)
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
end "${missing[*]:-all present}"

# The kernel runs aarch64 binaries through qemu once binfmt_misc knows them. The F flag makes it open
# the interpreter now, so it need not exist inside the chroot.
begin "binfmt_misc"
BINFMT=/proc/sys/fs/binfmt_misc
mountpoint -q $BINFMT || mount -t binfmt_misc binfmt_misc $BINFMT ||
  die "cannot mount binfmt_misc at $BINFMT; in a container, start it with --privileged or register qemu-aarch64 on the host (apt install qemu-user-static binfmt-support)"
[[ -e $BINFMT/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64 ||
  die "cannot register qemu-aarch64 with binfmt_misc"
grep -qx enabled $BINFMT/qemu-aarch64 || echo 1 >$BINFMT/qemu-aarch64
INTERPRETER=$(sed -n 's/^interpreter //p' $BINFMT/qemu-aarch64)
FLAGS=$(sed -n 's/^flags: //p' $BINFMT/qemu-aarch64)
end "qemu-aarch64 enabled, interpreter $INTERPRETER, flags $FLAGS"

# --- the arm64 root, built once ----------------------------------------------------------------------
begin "debootstrap"
if [[ -x $ROOT/usr/bin/python3 ]]; then
  end "cached in $ROOT"
else
  remove_root "$ROOT.partial"  # an interrupted build is never reused
  mkdir -p "$ROOT.partial"
  [[ $FLAGS == *F* ]] || install -D /usr/bin/qemu-aarch64-static "$ROOT.partial$INTERPRETER"
  echo "building Debian bookworm arm64 in $ROOT.partial from $MIRROR (full log: $CACHE/debootstrap.log)"
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOT.partial" "$MIRROR" 2>&1 | tee "$CACHE/debootstrap.log" |
    grep --line-buffered -E '\.\.\.$|successfully|^[WE]:' | grep --line-buffered -vE '^I: [A-Z][a-z]+ [^ ]+\.\.\.$'
  mv "$ROOT.partial" "$ROOT"
  end "built"
fi

# qemu-user shows this machine's x86 /proc/cpuinfo, on which XNNPACK's CPU detection (the cpuinfo
# library) crashes, and without /sys it gives up and LiteRT runs without XNNPACK: unlike a Pi. So the
# root gets /sys and a Pi's /proc/cpuinfo, one entry per core here (as /sys lists them).
write_cpuinfo() {
  local n
  for ((n = 0; n < $(getconf _NPROCESSORS_CONF); n++)); do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: %s\nCPU architecture: 8\n' \
      "$n" "${PI_CPUINFO[4]}" "${PI_CPUINFO[0]}"
    printf 'CPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "${PI_CPUINFO[1]}" "${PI_CPUINFO[2]}" "${PI_CPUINFO[3]}"
  done
  printf 'Model\t\t: %s (emulated by pi_check.sh)\n' "${PI_CPUINFO[5]}"
}

begin "enter the root"
write_cpuinfo >"$CACHE/cpuinfo"
mount_in_root proc -t proc proc
mount_in_root proc/cpuinfo --bind "$CACHE/cpuinfo"
mount_in_root dev --bind /dev
mount_in_root sys -t sysfs sysfs
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# pip in the root trusts what this machine trusts (a TLS-inspecting proxy's CA, say).
cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/pi-check-host.crt"
in_root /usr/bin/env LD_SHOW_AUXV=1 /bin/true | grep -E '^AT_HWCAP2?:' | tr -s ' ' || true
end "$(in_root uname -m), $(in_root python3 --version), $(in_root sed -n 's/^Model[[:space:]]*: //p' /proc/cpuinfo)"

# --- the bundle and images, classified on x86 first ---------------------------------------------------
begin "bundle"
if ((${#IMAGES[@]} == 0)) && [[ -d $PHOTOS ]]; then  # real photos: the same few of each class every run
  rm -rf "$CACHE/photos"
  for class in "$PHOTOS"/*/; do
    mapfile -d '' -t photos < <(find "$class" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) \
      -print0 | sort -z)
    mkdir -p "$CACHE/photos/$(basename "$class")"
    ((${#photos[@]} == 0)) || cp -t "$CACHE/photos/$(basename "$class")" "${photos[@]:0:PER_CLASS}"
  done
  IMAGES=("$CACHE/photos")
  echo "photos: $(find "$CACHE/photos" -type f | wc -l), the first $PER_CLASS of each class of $PHOTOS"
fi
if [[ -z $BUNDLE && -d $REPO/.demo/bundle ]]; then
  BUNDLE=$REPO/.demo/bundle
  ((${#IMAGES[@]})) || IMAGES=("$REPO/.demo/holdout")
  end "the demo's, $BUNDLE"
elif [[ -z $BUNDLE ]]; then
  BUNDLE=$CACHE/bundle
  # A cached bundle of an older binbot may name an older resize: built again, to check today's.
  if grep -qs '"resize_policy": "stretch-area-exact"' "$BUNDLE/bundle.json"; then
    end "cached small CNN, $BUNDLE"
  else
    remove_root "$BUNDLE"
    remove_root "$CACHE/bundle-build"
    mkdir -p "$CACHE/bundle-build"
    export TF_CPP_MIN_LOG_LEVEL=2
    "$VENV/bin/python" -m binbot.train.synthetic "$CACHE/bundle-build/images" --per-class 30 --seed 1
    "$VENV/bin/python" "$REPO/tests/pi_check.py" small-cnn "$CACHE/bundle-build/images" "$CACHE/bundle-build/run"
    "$VENV/bin/binbot" convert "$CACHE/bundle-build/run/model.keras" --out "$CACHE/bundle-build/bundle" \
      --mode int8 --allow-drop
    mv "$CACHE/bundle-build/bundle" "$BUNDLE"
    rm -rf "$CACHE/bundle-build"
    end "small CNN built in $BUNDLE"
  fi
else
  end "$BUNDLE"
fi
if ((${#IMAGES[@]} == 0)); then
  IMAGES=("$CACHE/images")
  if [[ ! -d $CACHE/images ]]; then
    rm -rf "$CACHE/images.partial"
    "$VENV/bin/python" -m binbot.train.synthetic "$CACHE/images.partial" --per-class 4 --seed 2
    mv "$CACHE/images.partial" "$CACHE/images"
  fi
fi

# The bundle, images and checkout are copied into the root, so nothing from the host is mounted in it
# but /proc, /dev and /sys; x86 classifies the same copies, so the two result files name the same paths.
remove_root "$WORK"
mkdir -p "$WORK/images"
cp -rL "$BUNDLE" "$WORK/bundle"
X86_IMAGES=() ARM_IMAGES=()
for i in "${!IMAGES[@]}"; do  # one folder per argument, in order, so both sides list the same files
  if [[ -d ${IMAGES[i]} ]]; then
    cp -rL "${IMAGES[i]}" "$WORK/images/$i"
  elif [[ -f ${IMAGES[i]} ]]; then
    mkdir "$WORK/images/$i" && cp -L "${IMAGES[i]}" "$WORK/images/$i/"
  else
    die "${IMAGES[i]}: no such image or folder"
  fi
  X86_IMAGES+=("$WORK/images/$i") ARM_IMAGES+=("/pi-check/images/$i")
done
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then  # the checkout as a clone would have it, plus uncommitted work
  git -C "$REPO" ls-files -z --cached --others --exclude-standard |
    (cd "$REPO" && xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' sh) |
    tar -C "$REPO" --null -T - -cf - | tar -C "$WORK" --one-top-level=src -xf -
else
  tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude=./.demo \
    --exclude=__pycache__ --exclude='*.egg-info' --exclude=./build -cf - . | tar -C "$WORK" --one-top-level=src -xf -
fi
CLASSES=$(grep -c . "$WORK/bundle/labels.txt")

# Three comparisons. Model-size inputs (each image decoded and resized here, as the bundle says, and saved
# losslessly) give both sides identical tensors: LiteRT and XNNPACK on aarch64 must compute what they
# compute on x86. Decoding and resizing the same files on arm64 must give those very pixels (the
# bundle's "stretch-area-exact" resize is integer arithmetic; OpenCV's INTER_AREA, which older bundles
# name, rounds a few pixels differently on ARM). And the image files, classified whole, must then
# agree within the runtime's tolerance too.
begin "model-size inputs (x86)"
"$VENV/bin/python" "$REPO/tests/pi_check.py" model-inputs "$WORK/bundle" "$WORK/images" "$WORK/inputs"
end

begin "classify (x86)"
"$VENV/bin/binbot" classify "$WORK/bundle" "${X86_IMAGES[@]}" --top-k "$CLASSES" \
  --json "$WORK/x86-files.json" | sed "s|$WORK/images/||"
"$VENV/bin/binbot" classify "$WORK/bundle" "$WORK/inputs" --top-k "$CLASSES" \
  --json "$WORK/x86-inputs.json" >/dev/null
end "image files and model-size inputs"

# --- install and run under emulation ---------------------------------------------------------------------
# A venv like the Pi's (/opt/binbot/venv, with the system site packages), reused once a run has
# completed it; binbot itself is reinstalled from this checkout every time.
begin "pip install (arm64)"
COMPLETE=$ROOT/opt/binbot/venv/.pi-check-complete
if [[ -f $COMPLETE ]]; then  # a previous run's venv: keep its packages, replace binbot
  rm "$COMPLETE"
  in_root pip uninstall -q -y binbot
else
  rm -rf "$ROOT/opt/binbot/venv"
  in_root python3 -m venv --system-site-packages /opt/binbot/venv
fi
in_root pip install --progress-bar off '/pi-check/src[device]'
touch "$COMPLETE"
VERSIONS=$(in_root pip list --format=freeze 2>/dev/null | grep -iE '^(binbot|ai-edge-litert|numpy|opencv-python-headless)==' | tr '\n' ' ')
end "$VERSIONS"

begin "bundle inspect (arm64)"
in_root binbot bundle inspect /pi-check/bundle
end

begin "classify (arm64)"
in_root binbot classify /pi-check/bundle "${ARM_IMAGES[@]}" --top-k "$CLASSES" --json /pi-check/arm64-files.json \
  2> >(tee "$WORK/classify.err" >&2) | sed "s|/pi-check/images/||"
end "$(grep -q 'XNNPACK delegate' "$WORK/classify.err" && echo "with" || echo "WITHOUT") the XNNPACK delegate"

begin "decode and resize (arm64)"
in_root python /pi-check/src/tests/pi_check.py model-inputs /pi-check/bundle /pi-check/images /pi-check/arm64-inputs
"$VENV/bin/python" "$REPO/tests/pi_check.py" same-pixels "$WORK/inputs" "$WORK/arm64-inputs" "$WORK/bundle"
end

begin "classify inputs (arm64)"
in_root binbot classify /pi-check/bundle /pi-check/inputs --top-k "$CLASSES" --json /pi-check/arm64-inputs.json >/dev/null
end

begin "compare x86 and arm64"
"$VENV/bin/python" "$REPO/tests/pi_check.py" compare "$WORK" "$ROOT" "$RUNTIME_TOLERANCE" "$TOLERANCE"
end "same labels; within $RUNTIME_TOLERANCE on the same inputs, $TOLERANCE from the files"

begin "run --once (arm64)"
in_root binbot run --bundle /pi-check/bundle --source replay:/pi-check/images --once --window 2 \
  --http 127.0.0.1:0 --results /pi-check/run-results.jsonl --events /pi-check/run-events.jsonl
FRAMES=$(grep -c . "$WORK/run-results.jsonl" || true)
EVENTS=$(grep -c . "$WORK/run-events.jsonl" || true)
head -n 5 "$WORK/run-events.jsonl"
((FRAMES > 0)) || die "binbot run classified no frames"
end "$FRAMES frames classified, $EVENTS events"
