"""The model bundle: the one format the converter writes and the device trusts.

A bundle is a folder of four files:

    model.tflite   the model; takes one RGB frame at its input size, gives class probabilities
    labels.txt     class names, one a line, in the model's output order
    selftest.npz   "inputs": a few RGB uint8 frames at the input size
    bundle.json    what the model is and how it was made, checksums of the three files, the
                   probabilities the converter saw for the self-test inputs, and a checksum of
                   bundle.json itself (over its other fields)

Loading one checks, in this order, and refuses with a message naming the file: bundle.json's
format version and own checksum, that labels.txt matches it, every file's checksum (before the
model reaches the interpreter), the model's input and outputs against bundle.json, and the
self-test. A bundle that loads is ready to serve.

An int8 bundle may keep a few layers in float ("mixed int8"); bundle.json's quantization.float_layers
names them (bundles made before mixed int8 have no such field: none). Its input and output are
uint8 all the same, so the device feeds and reads it as any int8 bundle.

Longer than 300 lines on purpose: this is the bundle format's one owner, writer, reader and verifier
together, so that the two sides can never drift apart.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from binbot import boundedjson
from binbot.device import frames
from binbot.device.labels import read_labels
from binbot.device.runtime import Classifier, TensorQuantization
from binbot.errors import BinbotError

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
MANIFEST = "bundle.json"
MODEL = "model.tflite"
LABELS = "labels.txt"
SELFTEST = "selftest.npz"
FILES = (MODEL, LABELS, SELFTEST)
MODES = ("int8", "float16", "dynamic", "float32")
# A bundle's id names its folder on the Pi, so it is checked against this form (and against the
# content it is computed from) wherever a bundle enters: nothing else may reach a path.
ID_PATTERN = re.compile(r"[0-9a-f]{12}")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
MAX_MANIFEST = 1 << 20  # bytes of bundle.json; binbot convert writes some 10 KB
INPUT_SIZES = (8, 4096)  # pixels a model's input may have on a side
MAX_SELFTEST_INPUTS = 256
NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_checksum(manifest: dict) -> str:
    """sha256 of bundle.json's fields other than this checksum, in a canonical JSON form."""
    fields = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def bundle_id(model_sha256: str, labels_sha256: str) -> str:
    """Names a bundle by what it does: the same model with other labels is another bundle."""
    return hashlib.sha256(f"{model_sha256}\n{labels_sha256}\n".encode()).hexdigest()[:12]


def write_selftest(folder: Path, inputs: np.ndarray) -> None:
    np.savez_compressed(folder / SELFTEST, inputs=inputs)


def write_manifest(folder: Path, content: dict) -> dict:
    """Complete content with the format version, id and checksums, and write it as folder/bundle.json.

    The model, labels and self-test files must already be in folder.
    """
    files = {}
    for name in FILES:
        path = folder / name
        files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {
        "format_version": FORMAT_VERSION,
        "id": bundle_id(files[MODEL]["sha256"], files[LABELS]["sha256"]),
        **content,
        "files": files,
    }
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@dataclass(frozen=True)
class Bundle:
    """bundle.json, read and checked against itself (not yet against the other files)."""

    path: Path
    manifest: dict
    id: str
    class_names: list[str]
    height: int
    width: int
    resize_policy: str  # a key of frames.RESIZE_POLICIES: how frames must be resized for this model
    mode: str
    input: TensorQuantization
    output: TensorQuantization
    selftest_expected: np.ndarray
    selftest_tolerance: float
    float_layers: tuple[str, ...] = ()  # the layers of an int8 model that run in float, by name

    @property
    def model_path(self) -> Path:
        return self.path / MODEL


@dataclass
class LoadedBundle:
    """A verified bundle and the classifier that passed its self-test, ready to serve."""

    bundle: Bundle
    classifier: Classifier
    selftest_difference: float


def read_bundle(path: str | Path) -> Bundle:
    """Parse path/bundle.json, refusing an unsupported format version or an edited file."""
    path = Path(path)
    if not path.is_dir():
        raise BinbotError(f"{path}: not a bundle folder (expected a folder made by binbot convert)")
    manifest_path = path / MANIFEST
    try:
        manifest = boundedjson.read(manifest_path, MAX_MANIFEST)
    except FileNotFoundError:
        raise BinbotError(f"{manifest_path}: missing; {path} is not a bundle, or an incomplete copy of one") from None
    except BinbotError as error:
        raise BinbotError(f"{error}; copy the bundle again") from None
    if not isinstance(manifest, dict):
        raise BinbotError(f"{manifest_path}: not a bundle manifest (a JSON object was expected)")

    version = manifest.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_FORMAT_VERSIONS))
        raise BinbotError(
            f"{manifest_path}: bundle format version {version!r} is not supported by this binbot "
            f"(it reads version {supported}); update binbot here, or convert the checkpoint with this version"
        )
    if manifest.get("manifest_sha256") != manifest_checksum(manifest):
        raise BinbotError(
            f"{manifest_path}: edited since conversion (its checksum does not match its content); "
            "convert the checkpoint again instead of editing a bundle"
        )
    field = _FieldReader(manifest_path, manifest)
    color_order, resize_policy = field("input.color_order", str), field("input.resize_policy", str)
    if color_order != frames.COLOR_ORDER or resize_policy not in frames.RESIZE_POLICIES:
        raise BinbotError(
            f"{manifest_path}: expects {color_order} frames resized by {resize_policy!r}; this binbot feeds "
            f"{frames.COLOR_ORDER} frames resized by {' or '.join(map(repr, frames.RESIZE_POLICIES))}"
        )
    files = _checked_files(manifest_path, field("files", dict))
    bundle_id_field = field("id", str)
    if not ID_PATTERN.fullmatch(bundle_id_field):
        raise BinbotError(f"{manifest_path}: id {bundle_id_field!r} is not a bundle id (12 hex digits); "
                          "this bundle was not made by binbot convert")
    computed = bundle_id(files[MODEL]["sha256"], files[LABELS]["sha256"])
    if bundle_id_field != computed:
        raise BinbotError(f"{manifest_path}: id {bundle_id_field} is not the id of its model and labels ({computed}); "
                          "convert the checkpoint again instead of editing a bundle")
    class_names = field("class_names", list)
    if not all(isinstance(name, str) for name in class_names):
        raise BinbotError(f"{manifest_path}: class_names should be a list of names")
    try:
        expected = np.array(field("selftest.expected", list), dtype=np.float32)
    except (ValueError, TypeError):
        expected = np.zeros(0)
    if expected.ndim != 2 or expected.shape[1] != len(class_names) or not 1 <= len(expected) <= MAX_SELFTEST_INPUTS:
        raise BinbotError(f"{manifest_path}: selftest.expected is not one row of {len(class_names)} probabilities per "
                          f"input, for 1 to {MAX_SELFTEST_INPUTS} inputs")
    height, width = field("input.height", int), field("input.width", int)
    if not (INPUT_SIZES[0] <= height <= INPUT_SIZES[1] and INPUT_SIZES[0] <= width <= INPUT_SIZES[1]):
        raise BinbotError(f"{manifest_path}: input {height}x{width} is not a size binbot feeds "
                          f"({INPUT_SIZES[0]} to {INPUT_SIZES[1]} pixels a side)")
    return Bundle(
        path=path,
        manifest=manifest,
        id=bundle_id_field,
        class_names=class_names,
        height=height,
        width=width,
        resize_policy=resize_policy,
        mode=field("quantization.mode", str),
        input=_tensor(field, "quantization.input"),
        output=_tensor(field, "quantization.output"),
        selftest_expected=expected,
        selftest_tolerance=field("selftest.tolerance", float),
        float_layers=_float_layers(field),
    )


def load_bundle(path: str | Path, threads: int = 2, report: Callable[[str], None] | None = None) -> LoadedBundle:
    """Read and verify a bundle and load its model; report(line) hears of each check passed."""
    report = report or (lambda line: None)
    bundle = read_bundle(path)
    _check_labels(bundle)
    report(f"{LABELS} lists the {len(bundle.class_names)} classes of {MANIFEST}")
    _check_checksums(bundle)
    report(f"sha256 of {', '.join(FILES)} match {MANIFEST}")
    classifier = Classifier(bundle.model_path, threads)
    _check_model(bundle, classifier)
    report(
        f"{MODEL} takes {bundle.height}x{bundle.width} {bundle.input.dtype.name} RGB and outputs "
        f"{classifier.n_classes} scores, as {MANIFEST} says"
        + (f" (int8 but for {len(bundle.float_layers)} layer{'s' if len(bundle.float_layers) > 1 else ''} in float)"
           if bundle.float_layers else "")
    )
    inputs = read_selftest_inputs(bundle)
    difference = run_selftest(classifier, inputs, bundle.selftest_expected, bundle.selftest_tolerance, bundle.path)
    report(
        f"self-test: {len(inputs)} inputs reproduce the converter's probabilities within {difference:.6f} "
        f"(tolerance {bundle.selftest_tolerance}) on {classifier.runtime}, {threads} thread(s)"
    )
    return LoadedBundle(bundle, classifier, difference)


def read_selftest_inputs(bundle: Bundle) -> np.ndarray:
    """selftest.npz's frames, if they are uint8 frames of the bundle's size: their .npy header is read
    first, so a file that claims more (or is a zip bomb) never has it decompressed."""
    path = bundle.path / SELFTEST
    wanted = (len(bundle.selftest_expected), bundle.height, bundle.width, 3)
    size = math.prod(wanted)
    try:
        with zipfile.ZipFile(path) as archive, archive.open("inputs.npy") as member:  # what np.savez writes
            version = np.lib.format.read_magic(member)
            if version not in NPY_HEADERS:
                raise ValueError(f".npy format {version} is not one numpy writes for uint8 frames")
            shape, fortran_order, dtype = NPY_HEADERS[version](member)
            if shape != wanted or dtype != np.uint8 or fortran_order:
                raise BinbotError(f"{path}: holds {dtype} inputs of shape {shape}, expected uint8 {wanted}")
            data = member.read(size + 1)
    except KeyError:
        raise BinbotError(f"{path}: has no inputs.npy; not a self-test file binbot convert wrote") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as error:
        raise BinbotError(f"{path}: not a readable self-test file ({error}); copy the bundle again") from None
    if len(data) != size:
        raise BinbotError(f"{path}: holds {len(data):,} bytes of frames, expected {size:,}; copy the bundle again")
    return np.frombuffer(data, np.uint8).reshape(wanted)


def run_selftest(classifier: Classifier, inputs: np.ndarray, expected: np.ndarray, tolerance: float,
                 where: Path | str) -> float:
    """The largest difference from the expected probabilities; refuses one beyond tolerance."""
    largest = 0.0
    for n, frame in enumerate(inputs):
        difference = float(np.abs(classifier.classify(frame) - expected[n]).max())
        if difference > tolerance:
            raise BinbotError(
                f"{where}: self-test failed: input {n} gives probabilities {difference:.4f} away from what the "
                f"converter saw (tolerance {tolerance}); {classifier.runtime} computes this model differently"
            )
        largest = max(largest, difference)
    return largest


def _check_labels(bundle: Bundle) -> None:
    path = bundle.path / LABELS
    labels = read_labels(path)
    expected = bundle.class_names
    if len(labels) != len(expected):
        missing = [name for name in expected if name not in labels]
        extra = [name for name in labels if name not in expected]
        detail = "; ".join(part for part in (
            f"missing: {', '.join(missing)}" if missing else "",
            f"unexpected: {', '.join(extra)}" if extra else "") if part)
        raise BinbotError(
            f"{path}: has {len(labels)} classes but the model outputs {len(expected)} ({detail or 'names repeated'}); "
            "copy the bundle again"
        )
    if labels != expected:
        raise BinbotError(f"{path}: lists {labels}, but {MANIFEST} says the model outputs {expected}")


def _checked_files(manifest_path: Path, listed: dict) -> dict:
    """bundle.json's file list, if it names exactly the bundle's files, each with a sha256 and a size."""
    if sorted(listed) != sorted(FILES):
        raise BinbotError(f"{manifest_path}: 'files' lists {sorted(listed)}, expected {sorted(FILES)}")
    for name, entry in listed.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and SHA256_PATTERN.fullmatch(entry["sha256"])
                and isinstance(entry.get("bytes"), int) and not isinstance(entry["bytes"], bool) and entry["bytes"] >= 0):
            raise BinbotError(f"{manifest_path}: files.{name} should be {{\"sha256\": 64 hex digits, \"bytes\": a size}}, "
                              f"not {entry!r}")
    return listed


def _check_checksums(bundle: Bundle) -> None:
    listed = bundle.manifest["files"]  # its form was checked by read_bundle
    for name in FILES:
        path = bundle.path / name
        try:
            found = path.stat()
        except FileNotFoundError:
            raise BinbotError(f"{path}: missing from the bundle; copy the bundle again") from None
        except OSError as error:
            raise BinbotError(f"{path}: cannot read ({error.strerror or error})") from None
        if not stat.S_ISREG(found.st_mode):
            raise BinbotError(f"{path}: not a regular file; copy the bundle again")
        if found.st_size != listed[name]["bytes"]:
            raise BinbotError(f"{path}: {found.st_size:,} bytes where {MANIFEST} says {listed[name]['bytes']:,}; "
                              "copy the bundle again")
        expected = listed[name]["sha256"]
        if sha256_file(path) != expected:
            raise BinbotError(
                f"{path}: corrupt or changed since conversion (sha256 does not match {MANIFEST}); copy the bundle again"
            )


def _check_model(bundle: Bundle, classifier: Classifier) -> None:
    where = bundle.model_path
    if (classifier.height, classifier.width) != (bundle.height, bundle.width):
        raise BinbotError(
            f"{where}: takes {classifier.height}x{classifier.width} images but {MANIFEST} says {bundle.height}x{bundle.width}"
        )
    if classifier.n_classes != len(bundle.class_names):
        raise BinbotError(
            f"{where}: outputs {classifier.n_classes} classes but {LABELS} lists {len(bundle.class_names)}"
        )
    for name, actual, recorded in (("input", classifier.input, bundle.input), ("output", classifier.output, bundle.output)):
        if actual != recorded:
            raise BinbotError(f"{where}: its {name} tensor is {actual.as_json()} but {MANIFEST} says {recorded.as_json()}")


def _float_layers(field: _FieldReader) -> tuple[str, ...]:
    """The names in quantization.float_layers; none in a bundle made before mixed int8."""
    if "float_layers" not in field("quantization", dict):
        return ()
    layers = field("quantization.float_layers", list)
    if not all(isinstance(layer, dict) and isinstance(layer.get("name"), str) for layer in layers):
        raise BinbotError(f"{field.path}: quantization.float_layers should be a list of {{\"name\": a layer name, ...}}")
    return tuple(layer["name"] for layer in layers)


def _tensor(field: _FieldReader, name: str) -> TensorQuantization:
    dtype = field(f"{name}.dtype", str)
    if dtype not in ("uint8", "int8", "float32", "float16"):
        raise BinbotError(f"{field.path}: {name}.dtype {dtype!r} is not a tensor type BinBot uses")
    return TensorQuantization(np.dtype(dtype), field(f"{name}.scale", float), field(f"{name}.zero_point", int))


class _FieldReader:
    """Fetches a dotted field of bundle.json with its type checked, naming what is wrong."""

    def __init__(self, path: Path, manifest: dict):
        self.path, self.manifest = path, manifest

    def __call__(self, dotted: str, kind: type):
        value = self.manifest
        for key in dotted.split("."):
            if not isinstance(value, dict) or key not in value:
                raise BinbotError(f"{self.path}: has no {dotted!r} field; it was not written by binbot convert")
            value = value[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise BinbotError(f"{self.path}: field {dotted!r} should be a {kind.__name__}, not {value!r}")
        return value
