"""tf.data pipelines: decode and resize through the device's frame contract, batch, augment."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import layers, Sequential

from binbot.device.frames import load_model_input
from binbot.train.folder import Example

# Decoded images are kept in memory after the first epoch when they fit in this much.
CACHE_LIMIT_BYTES = 4 << 30


def make_dataset(
    examples: list[Example],
    image_size: int,
    batch_size: int,
    *,
    training: bool = False,
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
        augment = augmentation(seed)
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def augmentation(seed: int = 0) -> Sequential:
    """Random changes a camera could plausibly make; applied to training batches, never exported."""
    return Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.05, fill_mode="reflect", seed=seed),
            layers.RandomZoom(0.1, fill_mode="reflect", seed=seed),
            layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed),
            layers.RandomContrast(0.1, value_range=(0, 255), seed=seed),
        ],
        name="augmentation",
    )
