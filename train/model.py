"""The classifier: MobileNetV2 features under a small dense head.

Its checkpoints are loaded by binbot.convert.checkpoint.load_checkpoint, the one safe reader of them.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from binbot.errors import BinbotError

IMAGE_SIZE = 224
BASE_LAYERS = 154  # layers in MobileNetV2(include_top=False), input layer included


def build_model(n_classes: int, weights: str | None = "imagenet", image_size: int = IMAGE_SIZE) -> keras.Model:
    """Raw RGB 0..255 in, class probabilities out; the base is frozen unless weights is None."""
    base = mobilenet_base(weights, image_size)
    train_base = weights is None
    base.trainable = train_base

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_mobilenet_range")(inputs)
    # A pretrained base always runs its batch norm in inference mode, also once unfrozen;
    # a base trained from scratch has no statistics yet and must learn them.
    x = base(x) if train_base else base(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(1024, activation="relu", name="dense")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name="binbot_mobilenetv2")


def mobilenet_base(weights: str | None, image_size: int) -> keras.Model:
    """MobileNetV2 without its top, from ImageNet (downloaded), a local .h5, or random."""
    shape = (image_size, image_size, 3)
    if weights is None or weights == "imagenet":
        try:
            return keras.applications.MobileNetV2(input_shape=shape, include_top=False, weights=weights)
        except Exception as error:  # Keras raises a bare Exception when the download fails
            raise BinbotError(
                f"could not download the ImageNet weights ({error}); offline, pass a local file with "
                "--weights PATH (mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5)"
            ) from error
    path = Path(weights)
    if not path.is_file():
        raise BinbotError(f"{path}: weights file not found (use --weights imagenet, none, or a .h5 path)")
    try:
        return keras.applications.MobileNetV2(input_shape=shape, include_top=False, weights=str(path))
    except (ValueError, OSError, KeyError) as error:
        raise BinbotError(f"{path}: not MobileNetV2 (alpha 1.0, no top) weights: {error}") from error


def base_of(model: keras.Model) -> keras.Model:
    """The MobileNetV2 base nested inside a BinBot model."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise BinbotError(f"model {model.name!r} is not a BinBot MobileNetV2 classifier (no single nested base)")
    return nested[0]


def freeze_base(model: keras.Model) -> None:
    base_of(model).trainable = False


def unfreeze_top(model: keras.Model, fine_tune_at: int) -> int:
    """Make base layers from index fine_tune_at on trainable, batch norm excepted; returns how many."""
    base = base_of(model)
    if not 0 <= fine_tune_at < len(base.layers):
        raise BinbotError(f"--fine-tune-at must be between 0 and {len(base.layers) - 1}, got {fine_tune_at}")
    base.trainable = True
    for index, layer in enumerate(base.layers):
        frozen = index < fine_tune_at or isinstance(layer, layers.BatchNormalization)
        layer.trainable = not frozen
    return sum(1 for layer in base.layers if layer.trainable and layer.weights)
