#!/usr/bin/env bash
# Install (or update) the BinBot service on a Raspberry Pi, from this checkout:
#
#   sudo systemd/install.sh
#
# Creates the system user binbot, a venv in /opt/binbot/venv with binbot[device] in it, the
# default /etc/binbot/binbot.toml (an existing one is never touched), /var/lib/binbot/bundles,
# and the unit binbot.service, enabled at boot. It starts the service once a bundle is in place.
# What the config's tables need besides: [mqtt] gets paho-mqtt in the venv; for [gpio] it says
# what to install from apt if gpiozero is missing.
# Safe to run again, e.g. after `git pull` or adding a table: it changes only what differs, and says so.
#
# Environment:
#   DESTDIR=/some/root  install under that root instead of / (for tests and image builds): users
#                       go into DESTDIR/etc/passwd (useradd --prefix, so it must exist), the unit
#                       is enabled offline (systemctl --root) and nothing is started.
#   PYTHON=...          the interpreter the venv is made from (default /usr/bin/python3, whose
#                       site-packages hold apt's python3-picamera2).
set -euo pipefail

SERVICE_USER=binbot
VENV=/opt/binbot/venv
CONFIG=/etc/binbot/binbot.toml
STATE=/var/lib/binbot
UNIT=/etc/systemd/system/binbot.service

CHECKOUT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
PYTHON=${PYTHON:-/usr/bin/python3}
changes=0 code_changed=0 unit_changed=0

say() { echo "install.sh: $*"; }
changed() { changes=$((changes + 1)); say "$*"; }
fail() { echo "install.sh: error: $*" >&2; exit 1; }

# "user binbot" or "group video": the field from DESTDIR's passwd or group file (the Pi's own
# files when DESTDIR is empty), or nothing.
lookup() { # FILE NAME FIELD
    awk -F: -v name="$2" -v field="$3" '$1 == name { print $field; exit }' "$DESTDIR/etc/$1"
}

check_prerequisites() {
    [[ $(id -u) -eq 0 ]] || fail "must run as root: sudo $0"
    [[ -f $CHECKOUT/pyproject.toml ]] || fail "$CHECKOUT/pyproject.toml missing: run install.sh from a BinBot checkout"
    [[ -x $PYTHON ]] || fail "$PYTHON not found; install Python: sudo apt install python3"
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null ||
        fail "$PYTHON is older than Python 3.11 (Raspberry Pi OS Bookworm has 3.11)"
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
        fail "$PYTHON cannot create virtual environments: sudo apt install python3-venv"
    [[ -f $DESTDIR/etc/passwd && -f $DESTDIR/etc/group ]] ||
        fail "$DESTDIR/etc/passwd or $DESTDIR/etc/group missing: users cannot be created there"
    [[ -n $(lookup group video 1) ]] || fail "group video does not exist in $DESTDIR/etc/group (it owns the camera devices)"
}

ensure_user() {
    local prefix=()
    [[ -n $DESTDIR ]] && prefix=(--prefix "$DESTDIR")
    if [[ -z $(lookup passwd "$SERVICE_USER" 1) ]]; then
        useradd "${prefix[@]}" --system --user-group --groups video --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin --comment "BinBot camera service" "$SERVICE_USER"
        changed "created system user $SERVICE_USER (no login, no home) in group video"
    elif ! lookup group video 4 | tr , '\n' | grep -qx "$SERVICE_USER"; then
        usermod "${prefix[@]}" --append --groups video "$SERVICE_USER"
        changed "added user $SERVICE_USER to group video"
    fi
    # The unit's SupplementaryGroups=gpio (the GPIO devices' group on Raspberry Pi OS) must exist for it to start.
    if [[ -z $(lookup group gpio 1) ]]; then
        groupadd "${prefix[@]}" --system gpio
        changed "created group gpio (for the unit's SupplementaryGroups; Raspberry Pi OS has it already)"
    fi
}

# The files setuptools builds binbot from, listed by pyproject.toml itself: copied, the build
# writes nothing into the checkout, and their checksum says whether the venv is up to date.
copy_sources() { # DEST
    local files
    files=$("$PYTHON" - "$CHECKOUT/pyproject.toml" <<'EOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(["pyproject.toml", project["project"]["readme"], *project["tool"]["setuptools"]["package-dir"].values()]))
EOF
    )
    # shellcheck disable=SC2086  # one path per line, none with spaces
    tar -C "$CHECKOUT" --exclude=__pycache__ -cf - $files | tar -C "$1" -xf -
}

ensure_venv() {
    local venv=$DESTDIR$VENV build stamp system_numpy
    if [[ ! -x $venv/bin/python ]]; then
        mkdir -p "$(dirname "$venv")"
        "$PYTHON" -m venv --system-site-packages "$venv"
        changed "created $VENV (with the system's site-packages, for apt's picamera2)"
    fi
    build=$(mktemp -d)
    # shellcheck disable=SC2064  # expand now: $build is local
    trap "rm -rf '$build'" EXIT
    mkdir "$build/src"
    copy_sources "$build/src"
    # apt's picamera2 (its simplejpeg) is compiled against apt's numpy 1.x: a numpy 2 in the venv
    # would shadow it and break `import picamera2`, so pip must keep the system's numpy.
    system_numpy=$("$PYTHON" -I -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
    : > "$build/constraints.txt"
    [[ -n $system_numpy ]] && echo "numpy==$system_numpy" > "$build/constraints.txt"
    stamp=$( (cd "$build" && find src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; cat constraints.txt) | sha256sum | cut -d' ' -f1)
    if [[ -f $venv/.binbot-source && $(cat "$venv/.binbot-source") == "$stamp" ]]; then
        return
    fi
    [[ -n $system_numpy ]] && say "keeping the system's numpy $system_numpy (apt's picamera2 is built against it)"
    say "installing binbot[device] into $VENV (pip; a few minutes on a Pi)"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-warn-script-location \
        --constraint "$build/constraints.txt" "$build/src[device]" ||
        fail "pip could not install binbot[device] into $VENV (see above); run install.sh again once that is fixed"
    "$venv/bin/binbot" --version > /dev/null || fail "$VENV/bin/binbot does not run after installing"
    echo "$stamp" > "$venv/.binbot-source"
    code_changed=1
    changed "installed $("$venv/bin/binbot" --version) into $VENV"
}

# The names of the tables in the TOML file FILE, one a line; its problem, in one line, if it cannot be read.
config_tables() { # FILE
    "$PYTHON" - "$1" <<'EOF'
import sys, tomllib
try:
    with open(sys.argv[1], "rb") as file:
        settings = tomllib.load(file)
except (OSError, tomllib.TOMLDecodeError) as error:
    sys.exit(f"{sys.argv[1]}: {error}")
print("\n".join(name for name, value in settings.items() if isinstance(value, dict)))
EOF
}

# pyproject.toml's requirements of binbot[EXTRA], one a line.
extra_requirements() { # EXTRA
    "$PYTHON" - "$CHECKOUT/pyproject.toml" "$1" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as file:
    print("\n".join(tomllib.load(file)["project"]["optional-dependencies"][sys.argv[2]]))
EOF
}

# The packages the installed config's tables need besides binbot[device].
# [mqtt]: the mqtt extra's paho-mqtt, from pip into the venv (apt's python3-paho-mqtt is 1.6 on
# Bookworm, older than the extra asks for); pip leaves the venv alone when it is there already.
# [gpio]: gpiozero and its pin driver lgpio, from apt, seen by the venv through the system's
# site-packages (Raspberry Pi OS ships them; lgpio is a C library pip cannot build without its
# headers), so only the command is said when they are missing.
ensure_table_packages() {
    local venv=$DESTDIR$VENV tables installed requirements
    if ! tables=$(config_tables "$DESTDIR$CONFIG" 2>&1); then
        say "warning: cannot read $tables; the packages its [gpio] and [mqtt] tables need were not checked"
        return
    fi
    if grep -qx mqtt <<< "$tables"; then
        mapfile -t requirements < <(extra_requirements mqtt)
        installed=$("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
            --report - "${requirements[@]}" | "$venv/bin/python" -c 'import json, sys
print(", ".join(p["metadata"]["name"] + " " + p["metadata"]["version"] for p in json.load(sys.stdin)["install"]))') ||
            fail "pip could not install ${requirements[*]} into $VENV for the [mqtt] table of $CONFIG (see above); run install.sh again once that is fixed"
        if [[ -n $installed ]]; then
            code_changed=1
            changed "installed $installed into $VENV for the [mqtt] table of $CONFIG"
        fi
    fi
    if grep -qx gpio <<< "$tables" && ! "$venv/bin/python" -c 'import gpiozero, lgpio' 2> /dev/null; then
        say "warning: the [gpio] table of $CONFIG needs gpiozero and its pin driver lgpio, which $VENV cannot import;" \
            "install them with: sudo apt install python3-gpiozero python3-lgpio"
    fi
}

# DEST gets SOURCE's content with MODE, owned by root, unless it already has exactly that.
install_file() { # SOURCE DEST MODE
    if [[ -f $2 ]] && cmp -s "$1" "$2" && [[ $(stat -c %a "$2") == "$3" ]]; then
        return 1
    fi
    mkdir -p "$(dirname "$2")"
    install -m "$3" -o 0 -g 0 "$1" "$2.tmp.$$"
    mv -f "$2.tmp.$$" "$2"
}

ensure_config() {
    if [[ -e $DESTDIR$CONFIG ]]; then
        say "kept $CONFIG as it is (the default is systemd/binbot.toml)"
    else
        install_file "$CHECKOUT/systemd/binbot.toml" "$DESTDIR$CONFIG" 644
        changed "wrote the default $CONFIG"
    fi
}

# The state directories as the unit's StateDirectory= makes them: binbot's own, mode 0750.
ensure_state_dirs() {
    local uid gid dir
    uid=$(lookup passwd "$SERVICE_USER" 3)
    gid=$(lookup passwd "$SERVICE_USER" 4)
    for dir in "$STATE" "$STATE/bundles"; do
        if [[ ! -d $DESTDIR$dir ]]; then
            install -d -m 750 -o "$uid" -g "$gid" "$DESTDIR$dir"
            changed "created $dir"
        elif [[ $(stat -c '%u:%g %a' "$DESTDIR$dir") != "$uid:$gid 750" ]]; then
            chown "$uid:$gid" "$DESTDIR$dir"
            chmod 750 "$DESTDIR$dir"
            changed "made $dir $SERVICE_USER's, mode 0750"
        fi
    done
}

ensure_unit() {
    if install_file "$CHECKOUT/systemd/binbot.service" "$DESTDIR$UNIT" 644; then
        unit_changed=1
        changed "installed $UNIT"
    fi
}

enable_and_start() {
    if [[ -n $DESTDIR ]]; then
        if ! systemctl --root="$DESTDIR" --quiet is-enabled binbot.service 2>/dev/null; then
            systemctl --root="$DESTDIR" --quiet enable binbot.service
            changed "enabled binbot.service (offline, under $DESTDIR)"
        fi
        say "DESTDIR is set: not reloading systemd or starting the service"
        return
    fi
    ((unit_changed)) && systemctl daemon-reload
    if ! systemctl --quiet is-enabled binbot.service 2>/dev/null; then
        systemctl --quiet enable binbot.service
        changed "enabled binbot.service (starts at boot)"
    fi
    if [[ ! -e $STATE/bundles/current ]]; then
        say "no bundle yet, so the service is not started. Next, from the machine with the bundle:"
        say "    binbot deploy BUNDLE ${SUDO_USER:-pi}@$(hostname)"
        say "or copy a bundle folder to $STATE/bundles/ID/, then: sudo ln -sfn ID $STATE/bundles/current && sudo systemctl start binbot"
        return
    fi
    if systemctl --quiet is-active binbot.service; then
        if ((unit_changed || code_changed)); then
            systemctl restart binbot.service || fail "binbot.service failed to restart: journalctl -u binbot -n 50"
            changed "restarted binbot.service to run the new version"
        fi
    else
        systemctl start binbot.service || fail "binbot.service failed to start: journalctl -u binbot -n 50"
        changed "started binbot.service"
    fi
}

check_picamera2() {
    local error
    if error=$("$DESTDIR$VENV/bin/python" -c 'import picamera2' 2>&1 >/dev/null); then
        return
    fi
    if [[ $error == *"No module named 'picamera2'"* ]]; then
        say "warning: no picamera2 in $VENV; the default source = \"picamera2\" needs: sudo apt install python3-picamera2"
    else
        say "warning: picamera2 does not import in $VENV: $(tail -n 1 <<< "$error")"
    fi
}

main() {
    check_prerequisites
    ensure_user
    ensure_venv
    ensure_config
    ensure_table_packages
    ensure_state_dirs
    ensure_unit
    enable_and_start
    check_picamera2
    if ((changes == 0)); then
        say "nothing to do: everything was already installed"
    else
        say "done: $changes change(s)"
    fi
}

main "$@"
