"""The tf.data pipeline: the device's preprocessing, augmentation for training batches only."""

import shutil

import numpy as np
import pytest

from binbot.device.frames import load_model_input
from binbot.device.imagefolder import scan
from binbot.train.model import build_model
from binbot.train.pipeline import augmentation, make_dataset
from helpers import TINY_SIZE, write_files_only_pillow_reads


def batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_validation_batches_are_exactly_the_device_preprocessing(image_folder):
    examples = scan(image_folder).examples[:10]
    (images, labels), = batches(make_dataset(examples, TINY_SIZE, batch_size=16))
    expected = np.stack([load_model_input(e.path, TINY_SIZE, TINY_SIZE) for e in examples])
    np.testing.assert_array_equal(images, expected.astype(np.float32))
    assert list(labels) == [e.label for e in examples]


def test_a_file_another_library_reads_is_skipped_rather_than_failing_an_epoch(image_folder, tmp_path):
    data = shutil.copytree(image_folder, tmp_path / "data")
    write_files_only_pillow_reads(data / "can")
    examples = scan(data).examples

    (images, labels), = batches(make_dataset(examples, TINY_SIZE, batch_size=64, training=True))

    assert len(images) == len(examples) == 36


def test_training_batches_are_shuffled_and_augmented_but_keep_their_labels(image_folder):
    examples = scan(image_folder).examples
    plain = np.stack([load_model_input(e.path, TINY_SIZE, TINY_SIZE) for e in examples]).astype(np.float32)
    (images, labels), = batches(make_dataset(examples, TINY_SIZE, batch_size=64, training=True, seed=1))

    assert sorted(labels) == sorted(e.label for e in examples)
    assert list(labels) != [e.label for e in examples]  # shuffled
    matches = [np.array_equal(image, p) for image in images for p in plain]
    assert not any(matches)  # every training image was changed
    assert images.min() >= 0 and images.max() <= 255


@pytest.mark.parametrize("strength", ["standard", "strong"])
def test_augmentation_changes_images_but_not_their_range(strength):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    changed = augmentation(strength, seed=2)(images, training=True).numpy()
    assert changed.shape == images.shape
    assert not np.allclose(changed, images)
    assert changed.min() >= 0 and changed.max() <= 255


def test_strong_augmentation_turns_images_further_than_standard():
    image = np.zeros((1, TINY_SIZE, TINY_SIZE, 3), np.float32)
    image[:, : TINY_SIZE // 2] = 255  # top half bright

    def top_share(strength):
        layer = augmentation(strength, seed=0)
        tops = [layer(image, training=True).numpy()[0, : TINY_SIZE // 2].mean() / 255 for _ in range(40)]
        return min(tops)

    assert top_share("standard") > 0.6  # never turned far from upright
    assert top_share("strong") < 0.4  # sometimes upside down or on its side


def test_augmentation_is_not_part_of_the_model():
    model = build_model(3, weights=None, image_size=TINY_SIZE)
    assert not [layer for layer in model.layers if type(layer).__name__.startswith("Random")]
    assert not [layer for layer in model.layers if "augmentation" in layer.name]
