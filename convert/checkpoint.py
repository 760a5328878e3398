"""Keras checkpoints: the one safe loader of a .keras or .h5 model (for convert, train --init and evaluate),
and the checkpoint being converted, which may also be a SavedModel folder."""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from binbot.device.bundle import sha256_file
from binbot.errors import BinbotError

PREDICT_BATCH = 32

# What each checkpoint suffix holds, told by its first bytes.
CHECKPOINT_FORMATS = {".keras": (b"PK\x03\x04", "a zip archive"), ".h5": (b"\x89HDF\r\n\x1a\n", "an HDF5 file")}


def load_checkpoint(path: str | Path) -> keras.Model:
    """Load a .keras or .h5 model in Keras' safe mode (a checkpoint cannot run code)."""
    path = Path(path)
    if not path.exists():
        raise BinbotError(f"{path}: checkpoint not found")
    if path.is_dir() or path.suffix not in CHECKPOINT_FORMATS:
        raise BinbotError(f"{path}: not a Keras checkpoint (expected a .keras or .h5 file)")
    magic, kind = CHECKPOINT_FORMATS[path.suffix]
    with path.open("rb") as file:
        if file.read(len(magic)) != magic:
            raise BinbotError(f"{path}: not a Keras checkpoint (a {path.suffix} file is {kind}; this one is not)")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        # Its start is a zip's but the directory at its end is missing; Keras would call it "not found".
        raise BinbotError(f"{path}: not a readable Keras checkpoint, truncated or corrupt (its zip archive has no end)")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except (OSError, KeyError, zipfile.BadZipFile, EOFError) as error:  # the zip or HDF5 file itself
        raise BinbotError(f"{path}: not a readable Keras checkpoint, truncated or corrupt ({_first_line(error)})") from error
    except (ValueError, TypeError) as error:  # the model described in it
        # Keras has no exception type of its own for a safe-mode refusal; its message names the option.
        if "safe_mode" in str(error):
            raise BinbotError(
                f"{path}: refused by Keras' safe mode: the checkpoint contains Python code (a Lambda layer, say), and "
                "BinBot never runs code from a checkpoint; rebuild the model without it"
            ) from error
        raise BinbotError(f"{path}: Keras could not rebuild the model in this checkpoint ({_first_line(error)})") from error


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


@dataclass
class Checkpoint:
    """A loaded checkpoint that takes one RGB image size and gives one row of class scores."""

    path: Path
    kind: str  # "keras" or "savedmodel"
    height: int
    width: int
    n_outputs: int
    predict_batch: Callable[[np.ndarray], np.ndarray]  # float32 images in, scores out
    keras_model: object = None  # to export; a SavedModel folder is converted as it is

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for uint8 RGB images of shape (n, height, width, 3), fed as raw 0..255 floats."""
        rows = [self.predict_batch(images[start:start + PREDICT_BATCH].astype(np.float32))
                for start in range(0, len(images), PREDICT_BATCH)]
        return np.concatenate(rows).astype(np.float32)

    @contextmanager
    def saved_model(self) -> Iterator[Path]:
        """A SavedModel folder of this checkpoint, for the TFLite converter."""
        if self.keras_model is None:
            yield self.path
            return
        # Keras 3's model.export is the supported route; TFLiteConverter.from_keras_model breaks on it.
        with tempfile.TemporaryDirectory(prefix="binbot-export-") as scratch:
            export_dir = Path(scratch) / "saved_model"
            self.keras_model.export(str(export_dir), format="tf_saved_model", verbose=False)
            yield export_dir


def load_for_conversion(path: Path, trust_savedmodel: bool = False) -> Checkpoint:
    """Load a checkpoint and check it is an image classifier, with one-line errors naming the file.

    A SavedModel folder is loaded only when trusted: loading it runs its graph.
    """
    if not path.exists():
        raise BinbotError(f"{path}: checkpoint not found (expected a .keras or .h5 file, or a SavedModel folder)")
    if path.is_dir():
        return _load_saved_model(path, trust_savedmodel)
    model = load_checkpoint(path)
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        raise BinbotError(f"{path}: the model has no defined input (build it on an input shape before saving)") from None
    input_shape, output_shape = _shape(inputs, path, "inputs"), _shape(outputs, path, "outputs")
    return _checked(path, "keras", input_shape, output_shape, model.predict_on_batch, keras_model=model)


def checkpoint_sha256(path: Path) -> str:
    """sha256 of a checkpoint file, or of a SavedModel folder's files and their names."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\n{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def _load_saved_model(path: Path, trusted: bool) -> Checkpoint:
    if not (path / "saved_model.pb").is_file():
        raise BinbotError(f"{path}: a folder but not a SavedModel (no saved_model.pb in it)")
    if not trusted:
        raise BinbotError(
            f"{path}: not loaded: loading a SavedModel runs its graph, which can read and write files on this "
            "machine; convert a .keras checkpoint instead, or pass --trust-savedmodel if you trust where it came from"
        )
    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise BinbotError(f"{path}: not a readable SavedModel ({_first_line(error)})") from error
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise BinbotError(f"{path}: SavedModel has no 'serving_default' signature to convert")
    inputs = signature.structured_input_signature[1]
    outputs = list(signature.structured_outputs.values())
    input_shape, output_shape = _shape(list(inputs.values()), path, "inputs"), _shape(outputs, path, "outputs")
    input_name = next(iter(inputs))

    def predict_batch(batch: np.ndarray) -> np.ndarray:
        # Through `loaded`, whose lifetime keeps the signature's variables alive.
        result = loaded.signatures["serving_default"](**{input_name: tf.constant(batch)})
        return next(iter(result.values())).numpy()

    return _checked(path, "savedmodel", input_shape, output_shape, predict_batch)


def _shape(tensors: list, path: Path, what: str) -> tuple:
    if len(tensors) != 1:
        raise BinbotError(f"{path}: has {len(tensors)} {what}; an image classifier has exactly one")
    return tuple(tensors[0].shape)


def _checked(path: Path, kind: str, input_shape: tuple, output_shape: tuple,
             predict_batch: Callable[[np.ndarray], np.ndarray], keras_model: object = None) -> Checkpoint:
    if len(input_shape) != 4 or input_shape[3] != 3 or input_shape[1] is None or input_shape[2] is None:
        raise BinbotError(
            f"{path}: its input has shape {input_shape}, which is not an RGB image of a fixed size "
            "(expected (batch, height, width, 3))"
        )
    if len(output_shape) != 2 or output_shape[1] is None:
        raise BinbotError(f"{path}: its output has shape {output_shape}, not one row of class scores per image")
    return Checkpoint(path, kind, int(input_shape[1]), int(input_shape[2]), int(output_shape[1]), predict_batch, keras_model)
