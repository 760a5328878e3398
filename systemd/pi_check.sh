#!/usr/bin/env bash
# `make pi-check`: proof that the device side installs and runs on a Raspberry Pi's architecture.
#
# Builds a Debian bookworm arm64 root (Raspberry Pi OS bookworm's base, Python 3.11) with debootstrap,
# runs it through qemu-user-static, installs binbot[device] from the checkout into a venv there (pip
# picks the aarch64 wheels of ai-edge-litert, numpy and OpenCV), and runs `binbot bundle inspect`,
# `binbot classify` and a short `binbot run` under emulation. The proof: the emulated classify gives
# the same labels as this machine's, with probabilities within a tolerance, both from the image files
# and from the same model-size inputs (the runtime alone).
#
# The root is cached in .cache/pi-check/ (a second run skips debootstrap); delete it to rebuild.
# Needs root (debootstrap, chroot, binfmt_misc). Prints each step's time and PASS or FAIL at the end.
set -euo pipefail

usage() {
  cat <<EOF
usage: sudo systemd/pi_check.sh [--bundle DIR] [IMAGE_OR_FOLDER ...]

Without --bundle: .demo/bundle (from \`make demo\`) if it exists, else a small CNN bundle built
here with the workstation venv from generated images (cached in .cache/pi-check/bundle).
Without images: .demo/holdout for the demo's bundle, else generated bottle/can/paper images.

Environment (defaults): VENV (.venv, the workstation venv), PI_CHECK_CACHE (.cache/pi-check),
PI_CHECK_MIRROR (http://deb.debian.org/debian), PI_CHECK_CPU (cortex-a72, a Raspberry Pi 4;
cortex-a76 for a Pi 5, cortex-a53 for a Pi 3 or Zero 2 W), PI_CHECK_RUNTIME_TOLERANCE (0.005, the
largest probability difference accepted on identical model-size inputs: about one uint8 output
step), PI_CHECK_TOLERANCE (0.05, the same from the image files, each side decoding and resizing
them), PI_CHECK_TIMEOUT (1800, seconds for each emulated command).
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
TOLERANCE=${PI_CHECK_TOLERANCE:-0.05}
RUNTIME_TOLERANCE=${PI_CHECK_RUNTIME_TOLERANCE:-0.005}
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
if [[ -z $BUNDLE && -d $REPO/.demo/bundle ]]; then
  BUNDLE=$REPO/.demo/bundle
  ((${#IMAGES[@]})) || IMAGES=("$REPO/.demo/holdout")
  end "the demo's, $BUNDLE"
elif [[ -z $BUNDLE ]]; then
  BUNDLE=$CACHE/bundle
  if [[ -f $BUNDLE/bundle.json ]]; then
    end "cached small CNN, $BUNDLE"
  else
    # MobileNetV2 without ImageNet weights (offline) gives every image the same scores, which would
    # make the comparison pass whatever the arm64 side computes; a small CNN of the same kinds of
    # layers trains in seconds, and its scores do depend on the image.
    remove_root "$CACHE/bundle-build"
    mkdir -p "$CACHE/bundle-build"
    export TF_CPP_MIN_LOG_LEVEL=2
    "$VENV/bin/python" -m binbot.train.synthetic "$CACHE/bundle-build/images" --per-class 30 --seed 1
    "$VENV/bin/python" - "$CACHE/bundle-build/images" "$CACHE/bundle-build/run" <<'EOF'
import sys
from pathlib import Path

import keras
import numpy as np
from keras import layers

from binbot.device.frames import load_model_input
from binbot.device.labels import write_labels
from binbot.train import folder

images, run, size = folder.scan(sys.argv[1]), Path(sys.argv[2]), 96
keras.utils.set_random_seed(7)
inputs = keras.Input((size, size, 3), name="image")
x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(x)
x = layers.BatchNormalization()(x)
x = layers.ReLU(6.0)(x)
x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
x = layers.ReLU(6.0)(x)
x = layers.Conv2D(32, 1, activation="relu")(x)
x = layers.GlobalAveragePooling2D()(x)
model = keras.Model(inputs, layers.Dense(len(images.class_names), activation="softmax")(x))
model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
pixels = np.stack([load_model_input(e.path, size, size) for e in images.examples]).astype(np.float32)
history = model.fit(pixels, np.array([e.label for e in images.examples]), epochs=20, batch_size=10, verbose=0)
run.mkdir()
model.save(run / "model.keras")
write_labels(run / "labels.txt", images.class_names)
print(f"trained a small CNN at {size}x{size}: training accuracy {history.history['accuracy'][-1]:.2f}")
EOF
    "$VENV/bin/binbot" convert "$CACHE/bundle-build/run/model.keras" --out "$CACHE/bundle-build/bundle" \
      --mode int8 --calibration-data "$CACHE/bundle-build/images" --allow-drop
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

# Two comparisons. Model-size inputs (each image resized here, as binbot does, and saved losslessly)
# give both sides identical tensors: LiteRT and XNNPACK on aarch64 must compute what they compute on
# x86. The image files test the whole path, decoding and resizing included; OpenCV's INTER_AREA resize
# rounds a few pixels one level differently on x86 and ARM, which can move a probability by a few
# hundredths on a real model: hence the looser tolerance there.
begin "model-size inputs (x86)"
"$VENV/bin/python" - "$WORK/bundle" "$WORK/images" "$WORK/inputs" <<'EOF'
import json
import sys
from pathlib import Path

import cv2

from binbot.device.frames import IMAGE_SUFFIXES, load_model_input

bundle, images, inputs = (Path(arg) for arg in sys.argv[1:])
size = json.loads((bundle / "bundle.json").read_text())["input"]
files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
for path in files:
    out = inputs / path.relative_to(images).with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    rgb = load_model_input(path, size["height"], size["width"])
    cv2.imwrite(str(out), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
print(f"{len(files)} images resized to {size['height']}x{size['width']} and saved as PNG")
EOF
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

begin "classify inputs (arm64)"
in_root binbot classify /pi-check/bundle /pi-check/inputs --top-k "$CLASSES" --json /pi-check/arm64-inputs.json >/dev/null
end

begin "compare x86 and arm64"
"$VENV/bin/python" - "$WORK" "$ROOT" "$RUNTIME_TOLERANCE" "$TOLERANCE" <<'EOF'
import json
import sys

work, root, runtime_tolerance, tolerance = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
failed = False


def compare(kind: str, what: str, limit: float) -> None:
    """Print how far arm64's results for `kind` are from x86's; fail the check beyond limit."""
    global failed
    x86, arm = (json.load(open(f"{work}/{side}-{kind}.json")) for side in ("x86", "arm64"))
    assert x86["model"] == arm["model"], f"model ids differ: x86 {x86['model']}, arm64 {arm['model']}"
    assert len(x86["results"]) == len(arm["results"]) > 0, f"x86 and arm64 classified different {kind}"
    # Identical scores for every image would let a broken arm64 side match by chance: no proof.
    assert len(x86["results"]) == 1 or len({r["top"][0]["p"] for r in x86["results"]}) > 1, \
        "the model gives every image the same scores, so agreeing proves nothing: use another bundle"
    agree, largest, differing = 0, 0.0, []
    for a, b in zip(x86["results"], arm["results"]):
        assert a["image"].removeprefix(root) == b["image"], f"images differ: {a['image']} and {b['image']}"
        agree += a["label"] == b["label"]
        pa, pb = ({t["label"]: t["p"] for t in r["top"]} for r in (a, b))
        difference = max(abs(pa[k] - pb[k]) for k in pa)
        largest = max(largest, difference)
        if difference:
            differing.append(f"    {b['image'].removeprefix('/pi-check/')}: x86 {a['label']} {pa[a['label']]:.4f}, "
                             f"arm64 {b['label']} {pb[b['label']]:.4f} (largest difference {difference:.4f})")
    n = len(x86["results"])
    ok = agree == n and largest <= limit
    failed |= not ok
    print(f"{'ok  ' if ok else 'FAIL'} {what}: labels agree on {agree}/{n}, largest probability difference "
          f"{largest:.4f} (tolerance {limit:g}), {len(differing)} differ at all")
    if differing:
        print("\n".join(differing[:10]))


print(f"model {json.load(open(f'{work}/x86-files.json'))['model']}")
try:
    compare("inputs", "the same model-size inputs (the runtime)", runtime_tolerance)
    compare("files", "the image files (decode, resize, runtime)", tolerance)
except AssertionError as problem:
    sys.exit(f"pi_check.sh: error: {problem}")
if failed:
    sys.exit("pi_check.sh: error: arm64 results differ from x86 beyond the tolerance"
             " (if only the image files differ, it is preprocessing: OpenCV on ARM)")
EOF
end "same labels; within $RUNTIME_TOLERANCE on the same inputs, $TOLERANCE from the files"

begin "run --once (arm64)"
in_root binbot run --bundle /pi-check/bundle --source replay:/pi-check/images --once --window 2 \
  --http 127.0.0.1:0 --results /pi-check/run-results.jsonl --events /pi-check/run-events.jsonl
FRAMES=$(grep -c . "$WORK/run-results.jsonl" || true)
EVENTS=$(grep -c . "$WORK/run-events.jsonl" || true)
head -n 5 "$WORK/run-events.jsonl"
((FRAMES > 0)) || die "binbot run classified no frames"
end "$FRAMES frames classified, $EVENTS events"
