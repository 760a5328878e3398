"""Fixtures: small generated image sets and tiny models, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[2] / "shared"
IMAGENET_H5 = SHARED / "models" / "mobilenet_v2_1.0_224_no_top_imagenet_from_tfslim.h5"
TRASHNET = SHARED / "data" / "trashnet"

# Small enough to train in seconds; MobileNetV2 accepts inputs down to 32x32.
TINY_SIZE = 32

needs_imagenet_weights = pytest.mark.skipif(not IMAGENET_H5.is_file(), reason=f"{IMAGENET_H5} not present")
needs_trashnet = pytest.mark.skipif(not TRASHNET.is_dir(), reason=f"{TRASHNET} not present")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """bottle/, can/, paper/ with 12 generated photos each."""
    from binbot.train.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("images") / "data", per_class=12, seed=3)


@pytest.fixture(scope="session")
def tiny_run(image_folder, tmp_path_factory) -> Path:
    """A run directory from a short from-scratch training at 32x32."""
    from binbot.train.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(TrainConfig(data=image_folder, out=out, weights=None, image_size=TINY_SIZE, batch_size=8, epochs=1))
    return out


@pytest.fixture(scope="session")
def base_weights_h5(tmp_path_factory) -> Path:
    """A MobileNetV2 no-top weights file in the layout Keras downloads, with random values."""
    import keras

    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_no_top.weights.h5"
    base = keras.applications.MobileNetV2(input_shape=(TINY_SIZE, TINY_SIZE, 3), include_top=False, weights=None)
    base.save_weights(path)
    return path
