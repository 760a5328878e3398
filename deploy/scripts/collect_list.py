"""Lists the complete kept frames in a folder; run on the Pi by `python3 -c`, without binbot.

Arguments: the kept folder, the kept-frame id pattern (device/kept.py's KEPT_ID). Input: the ids
whose JPEG need not be hashed (those the workstation has already), one a line. Prints `missing` if
the folder is not there, else a line per complete frame, oldest first: `frame ID SIZE SHA256 JSON_SIZE`
(the JPEG's size and sha256, `-` when not asked for, and the sidecar's size): the workstation takes no
more than these sizes from the Pi. Complete means a regular ID.json and a regular ID.jpg; a symlink, a
folder or a name that is not an id is passed over, and no link is followed.
"""
import hashlib, os, re, stat, sys
folder, pattern = sys.argv[1], re.compile(sys.argv[2], re.ASCII)
known = set(sys.stdin.read().split())
try:
    names = set(os.listdir(folder))
except FileNotFoundError:
    print("missing")
    sys.exit(0)
except OSError as error:
    hint = "; it is the service's: run with --sudo auto or always" if isinstance(error, PermissionError) else ""
    sys.exit("binbot: cannot read %s (%s)%s" % (folder, error.strerror or error, hint))
def open_regular(name):
    """A file descriptor of folder/name if it is a regular file (not through a link), else None."""
    try:
        fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return fd
    os.close(fd)
    return None
for name in sorted(names):
    frame_id = name[:-5]
    if not (name.endswith(".json") and pattern.fullmatch(frame_id) and frame_id + ".jpg" in names):
        continue
    sidecar = open_regular(name)
    if sidecar is None:
        continue
    sidecar_size = os.fstat(sidecar).st_size
    os.close(sidecar)
    jpeg = open_regular(frame_id + ".jpg")
    if jpeg is None:
        continue
    with os.fdopen(jpeg, "rb") as file:
        size, digest = os.fstat(jpeg).st_size, "-"
        if frame_id not in known:
            sha = hashlib.sha256()
            for block in iter(lambda: file.read(1 << 20), b""):
                sha.update(block)
            size, digest = file.tell(), sha.hexdigest()
    print("frame %s %d %s %d" % (frame_id, size, digest, sidecar_size))
