"""Fixtures: small generated image sets and tiny models, built once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import DaemonProcess

pytest_plugins = ("sshd",)  # the `sshd` fixture: a real OpenSSH server on loopback

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


@pytest.fixture(scope="session")
def small_cnn_run(image_folder, tmp_path_factory) -> Path:
    """A run-like folder (model.keras, labels.txt, split.json) holding a small CNN trained in seconds.

    A MobileNetV2 trained briefly from scratch at 32x32 gives every image the same scores, which
    would make any comparison of a converted model with it pass; this model is built from the
    same kinds of layers (rescaling, convolutions, batch norm, ReLU6, pooling, softmax) and its
    scores do depend on the image.
    """
    return train_small_cnn(image_folder, tmp_path_factory.mktemp("runs") / "small-cnn", TINY_SIZE)


@pytest.fixture(scope="session")
def other_bundle(image_folder, tmp_path_factory) -> Path:
    """An int8 bundle of another small CNN: two of the three classes, at 40x40 instead of 32x32."""
    from binbot.cli import main

    two_classes = tmp_path_factory.mktemp("images") / "two"
    for name in ("bottle", "can"):
        shutil.copytree(image_folder / name, two_classes / name)
    run = train_small_cnn(two_classes, tmp_path_factory.mktemp("runs") / "other", 40)
    out = tmp_path_factory.mktemp("bundles") / "other"
    assert main(["convert", str(run / "model.keras"), "--out", str(out), "--mode", "int8"]) == 0
    return out


def train_small_cnn(images_folder: Path, run: Path, size: int) -> Path:
    import json

    import keras
    import numpy as np
    from keras import layers

    from binbot.device.frames import load_model_input
    from binbot.device.labels import write_labels
    from binbot.train import folder

    keras.utils.set_random_seed(7)
    images = folder.scan(images_folder)
    train, validation = folder.stratified_split(images.examples, 0.25, seed=0)
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.Conv2D(32, 1, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(len(images.class_names), activation="softmax")(x))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    pixels = np.stack([load_model_input(e.path, size, size) for e in train]).astype(np.float32)
    model.fit(pixels, np.array([e.label for e in train]), epochs=20, batch_size=9, verbose=0)

    run.mkdir()
    model.save(run / "model.keras")
    write_labels(run / "labels.txt", images.class_names)
    split = {"class_names": images.class_names}
    for part, examples in (("train", train), ("validation", validation)):
        split[part] = [{"path": str(e.path.resolve()), "label": e.label} for e in examples]
    (run / "split.json").write_text(json.dumps(split))
    return run


@pytest.fixture(scope="session")
def small_cnn_bundles(small_cnn_run, tmp_path_factory) -> dict[str, Path]:
    """The small CNN converted with `binbot convert` in every mode: {mode: bundle folder}."""
    from binbot.cli import main

    out = tmp_path_factory.mktemp("bundles")
    bundles = {}
    for mode in ("int8", "float16", "dynamic", "float32"):
        bundles[mode] = out / mode
        assert main(["convert", str(small_cnn_run / "model.keras"), "--out", str(bundles[mode]), "--mode", mode]) == 0
    return bundles


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: a filesystem that really fills up (mounting needs root, as CI has)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


@pytest.fixture
def start_daemon(tmp_path):
    """start(*args, **options): `binbot run` ARGS as a DaemonProcess, killed after the test if still running."""
    daemons = []

    def start(*args, **options):
        folder = tmp_path / f"daemon{len(daemons)}"
        folder.mkdir()
        daemons.append(DaemonProcess(folder, *args, **options))
        return daemons[-1]

    yield start
    for daemon in daemons:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
