"""Fixtures: small generated image sets and tiny models, built once per session; and the markers slow, root
and browser, given to each test by what it uses (see docs/development.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import helpers
from helpers import TINY_SIZE, DaemonProcess

pytest_plugins = ("sshd",)  # the `sshd` fixture: a real OpenSSH server on loopback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# slow: a fixture that trains a Keras model (tiny_run, small_cnn_run and every fixture built on it,
# other_bundle), starts `binbot run` as a process, talks to a real sshd, or runs install.sh.
SLOW_FIXTURES = {"tiny_run", "small_cnn_run", "other_bundle", "start_daemon", "sshd", "installed"}
# ... or, where no fixture shows it, a test that trains a model in its own body (or starts `binbot train`)
# or waits out MQTT's keepalive: 8 to 48 s each on 2 cores.
SLOW_TESTS = {
    "test_train": {"test_a_run_writes_every_output", "test_explicit_validation_folder",
                   "test_balanced_class_weights_come_from_the_training_split_and_are_recorded",
                   "test_pretrained_base_learns_the_synthetic_classes"},
    "test_model": {"test_saved_checkpoint_reloads_and_predicts_the_same",
                   "test_imagenet_download_failure_says_how_to_pass_a_local_file"},
    "test_mqtt": {"test_after_a_silent_link_drop_the_retained_state_is_the_newest_and_nothing_arrives_out_of_order"},
}
# root: mounts a tmpfs (small_disk), logs in to sshd as root (sshd), or is in a module that runs install.sh
# (useradd, chown, a container booted with systemd-nspawn) and skips itself unless run as root.
ROOT_FIXTURES = {"small_disk", "sshd"}
ROOT_MODULES = {"test_install"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(items):
    """Mark each test slow, root and browser by the rules above; browser: it calls helpers.chromium."""
    for module in {item.module for item in items}:
        missing = [name for name in SLOW_TESTS.get(module.__name__, ()) if not hasattr(module, name)]
        if missing:
            raise pytest.UsageError(f"conftest.py's SLOW_TESTS names {module.__name__}.{missing[0]}, which is not there")
    for item in items:
        module, used = item.module, set(item.fixturenames)
        if used & SLOW_FIXTURES or item.originalname in SLOW_TESTS.get(module.__name__, ()):
            item.add_marker(pytest.mark.slow)
        if used & ROOT_FIXTURES or module.__name__ in ROOT_MODULES:
            item.add_marker(pytest.mark.root)
        if vars(module).get("chromium") is helpers.chromium and "chromium" in item.function.__code__.co_names:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """bottle/, can/, paper/ with 12 generated photos each."""
    from binbot.train.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("images") / "data", per_class=12, seed=3)


@pytest.fixture(scope="session")
def tiny_run(image_folder, tmp_path_factory) -> Path:
    """A run folder from `binbot train` at 32x32 whose model tells the three classes apart.

    A MobileNetV2 trained for an epoch or two from scratch gives every image the same scores (its
    batch norm needs thousands of steps), and any figure compared with such a model matches. So the
    run continues (--init) from a small CNN fitted in seconds and shaped as build_model's classifier
    is, a nested base under a dense head, and the trainer itself trains it for one more epoch.
    """
    from binbot.train.trainer import TrainConfig, train

    runs = tmp_path_factory.mktemp("runs")
    start = separating_checkpoint(image_folder, runs / "start", TINY_SIZE)
    train(TrainConfig(data=image_folder, out=runs / "tiny", init=start, image_size=TINY_SIZE, batch_size=8, epochs=1))
    return runs / "tiny"


def separating_checkpoint(images_folder: Path, run: Path, size: int) -> Path:
    """A model.keras with labels.txt beside it: build_model's shape (rescaling, a nested base, a dense
    head) with a base of two convolutions, fitted on every image of images_folder."""
    import keras
    from keras import layers

    from binbot.convert import runfolder
    from binbot.device.imagefolder import scan
    from binbot.device.labels import write_labels

    keras.utils.set_random_seed(7)
    images = scan(images_folder)
    base = keras.Sequential([layers.Input((size, size, 3)), layers.Conv2D(16, 3, strides=2, activation="relu"),
                             layers.Conv2D(32, 3, strides=2, activation="relu"), layers.GlobalAveragePooling2D()],
                            name="small_base")
    inputs = keras.Input((size, size, 3), name="image")
    x = base(layers.Rescaling(1 / 127.5, offset=-1.0)(inputs))
    model = keras.Model(inputs, layers.Dense(len(images.class_names), activation="softmax", name="scores")(x))
    fit(model, images.examples, size)
    run.mkdir()
    model.save(run / runfolder.MODEL)
    write_labels(run / runfolder.LABELS, images.class_names)
    return run / runfolder.MODEL


def fit(model, examples, size: int, epochs: int = 20) -> None:
    """Fit model on the examples' images, loaded as the device loads them, in a few seconds."""
    import keras
    import numpy as np

    from binbot.device.frames import load_model_input

    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    pixels = np.stack([load_model_input(e.path, size, size) for e in examples]).astype(np.float32)
    model.fit(pixels, np.array([e.label for e in examples]), epochs=epochs, batch_size=9, verbose=0)


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
    import keras
    from keras import layers

    from binbot.convert import runfolder
    from binbot.device.imagefolder import scan
    from binbot.device.labels import write_labels
    from binbot.train.folder import stratified_split

    keras.utils.set_random_seed(7)
    images = scan(images_folder)
    train, validation = stratified_split(images.examples, 0.25, seed=0)
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
    fit(model, train, size)

    run.mkdir()
    model.save(run / runfolder.MODEL)
    write_labels(run / runfolder.LABELS, images.class_names)
    runfolder.write_split(run, runfolder.Split(images.class_names, train, validation))
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
