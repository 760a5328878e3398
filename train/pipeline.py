"""tf.data pipelines: decode and resize through the device's frame contract, batch, augment."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import layers, Sequential

from binbot.device.frames import load_model_input
from binbot.device.imagefolder import Example

# Decoded images are kept in memory after the first epoch when they fit in this much.
CACHE_LIMIT_BYTES = 4 << 30


def make_dataset(
    examples: list[Example],
    image_size: int,
    batch_size: int,
    *,
    training: bool = False,
    augment: str = "standard",
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of (uint8-valued float32 RGB images, integer labels); augmented only if training."""
    paths = [str(e.path) for e in examples]
    labels = np.array([e.label for e in examples], dtype=np.int32)

    def decode(path: tf.Tensor) -> tf.Tensor:
        image = tf.numpy_function(
            lambda p: load_model_input(p.decode(), image_size, image_size), [path], tf.uint8, stateful=False
        )
        image.set_shape((image_size, image_size, 3))
        return image

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    dataset = dataset.map(lambda p, y: (decode(p), y), num_parallel_calls=tf.data.AUTOTUNE)
    if len(examples) * image_size * image_size * 3 <= CACHE_LIMIT_BYTES:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        randomly_change = augmentation(augment, seed)
        dataset = dataset.map(lambda x, y: (randomly_change(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


AUGMENTATIONS = ("standard", "strong")


def augmentation(strength: str = "standard", seed: int = 0) -> Sequential:
    """Random changes a camera could plausibly make; applied to training batches, never exported.

    "standard" is the seed recipe's: mirror images, small turns and zooms, light changes.
    "strong" suits a camera looking down into a bin, where an item can lie at any angle:
    flips both ways, any rotation, more zoom and shift, stronger light changes.
    """
    if strength == "standard":
        flip, rotation, zoom, shift, light = "horizontal", 0.05, 0.1, 0.0, 0.1
    elif strength == "strong":
        flip, rotation, zoom, shift, light = "horizontal_and_vertical", 0.5, 0.2, 0.1, 0.2
    else:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {strength!r}")
    steps = [
        layers.RandomFlip(flip, seed=seed),
        layers.RandomRotation(rotation, fill_mode="reflect", seed=seed),
        layers.RandomZoom(zoom, fill_mode="reflect", seed=seed),
        layers.RandomBrightness(light, value_range=(0, 255), seed=seed),
        layers.RandomContrast(light, value_range=(0, 255), seed=seed),
    ]
    if shift:
        steps.insert(3, layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=seed))
    return Sequential(steps, name=f"{strength}_augmentation")
