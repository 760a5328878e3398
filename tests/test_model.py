"""The classifier is the seed's, layer by layer, and its checkpoints round-trip safely."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

from binbot.errors import BinbotError
from binbot.convert.checkpoint import load_checkpoint
from binbot.train.model import BASE_LAYERS, base_of, build_model, mobilenet_base, unfreeze_top
from helpers import IMAGENET_H5, TINY_SIZE, needs_imagenet_weights

MOBILENET_V2_NO_TOP_PARAMS = 2_257_984


def test_architecture_is_the_seed_layer_by_layer(base_weights_h5):
    model = build_model(6, weights=str(base_weights_h5), image_size=224)

    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Rescaling", "Functional", "GlobalAveragePooling2D", "Dense", "Dropout", "Dense"]
    _, rescaling, base, _, dense, dropout, scores = model.layers
    assert model.input_shape == (None, 224, 224, 3)
    # raw 0..255 becomes MobileNetV2's -1..1
    assert rescaling.scale == pytest.approx(1 / 127.5) and rescaling.offset == -1.0
    assert base.name.startswith("mobilenetv2_1.00")
    assert len(base.layers) == BASE_LAYERS
    assert base.count_params() == MOBILENET_V2_NO_TOP_PARAMS
    assert base.output_shape == (None, 7, 7, 1280)
    assert not base.trainable
    assert dense.units == 1024 and dense.activation.__name__ == "relu"
    assert dropout.rate == 0.5
    assert scores.units == 6 and scores.activation.__name__ == "softmax"
    assert model.count_params() == MOBILENET_V2_NO_TOP_PARAMS + (1280 * 1024 + 1024) + (1024 * 6 + 6)
    assert [w.name for w in model.trainable_weights] == ["kernel", "bias", "kernel", "bias"]


def test_rescaling_maps_pixel_range_to_minus_one_one():
    model = build_model(3, weights=None, image_size=TINY_SIZE)
    probe = keras.Model(model.input, model.layers[1].output)
    out = probe.predict(np.stack([np.zeros((TINY_SIZE, TINY_SIZE, 3)), np.full((TINY_SIZE, TINY_SIZE, 3), 255.0)]),
                        verbose=0)
    assert out[0].max() == pytest.approx(-1.0) and out[1].min() == pytest.approx(1.0)


def test_weights_none_trains_the_whole_base():
    model = build_model(3, weights=None, image_size=TINY_SIZE)
    assert base_of(model).trainable
    assert len(model.trainable_weights) > 100


def test_local_weights_file_is_loaded_into_the_base(base_weights_h5):
    base = mobilenet_base(str(base_weights_h5), TINY_SIZE)
    reference = keras.applications.MobileNetV2(input_shape=(TINY_SIZE, TINY_SIZE, 3), include_top=False, weights=None)
    reference.load_weights(base_weights_h5)
    assert len(base.weights) == len(reference.weights) > 0
    for ours, theirs in zip(base.weights, reference.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@needs_imagenet_weights
def test_the_offline_imagenet_file_loads():
    base = mobilenet_base(str(IMAGENET_H5), 224)
    assert base.count_params() == MOBILENET_V2_NO_TOP_PARAMS


def test_missing_or_wrong_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(BinbotError, match="weights file not found"):
        mobilenet_base(str(tmp_path / "missing.h5"), TINY_SIZE)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(BinbotError, match="junk.h5: not MobileNetV2"):
        mobilenet_base(str(junk), TINY_SIZE)


def test_imagenet_download_failure_says_how_to_pass_a_local_file(image_folder, tmp_path):
    # A proxy on the discard port makes the download fail even on a machine with internet access.
    env = {"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "binbot", "train", "--data", str(image_folder), "--out", str(tmp_path / "run"),
         "--weights", "imagenet"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("binbot train: error: could not download the ImageNet weights")
    assert "--weights PATH" in last
    assert not (tmp_path / "run").exists()


def test_fine_tuning_unfreezes_the_top_but_keeps_batch_norm_frozen(base_weights_h5):
    model = build_model(3, weights=str(base_weights_h5), image_size=TINY_SIZE)
    unfreeze_top(model, 100)
    base = base_of(model)
    assert not any(layer.trainable for layer in base.layers[:100])
    top = base.layers[100:]
    assert all(layer.trainable != isinstance(layer, layers.BatchNormalization) for layer in top)
    with pytest.raises(BinbotError, match="--fine-tune-at"):
        unfreeze_top(model, BASE_LAYERS)


def test_saved_checkpoint_reloads_and_predicts_the_same(tmp_path):
    model = build_model(3, weights=None, image_size=TINY_SIZE)
    images = np.random.default_rng(0).uniform(0, 255, (4, TINY_SIZE, TINY_SIZE, 3)).astype("float32")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")

    reloaded = load_checkpoint(tmp_path / "model.keras")

    np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def lambda_model() -> keras.Model:
    """A model holding Python code: a Lambda layer, which safe mode will not rebuild."""
    inputs = keras.Input((4,))
    return keras.Model(inputs, layers.Lambda(lambda x: x * 2)(inputs))


@pytest.mark.parametrize("name", ["model.keras", "model.h5"])
def test_checkpoint_with_code_is_refused_by_safe_mode(tmp_path, name):
    lambda_model().save(tmp_path / name)

    with pytest.raises(BinbotError) as refused:
        load_checkpoint(tmp_path / name)

    message = str(refused.value)
    assert message.startswith(f"{tmp_path / name}: refused by Keras' safe mode")
    assert "Lambda layer" in message and "rebuild the model without it" in message
    assert "truncated" not in message and "\n" not in message


def test_checkpoint_with_an_unknown_layer_class_does_not_claim_to_be_truncated(tmp_path):
    class Twice(layers.Layer):  # not registered, so Keras cannot find it when loading
        def call(self, x):
            return x * 2

    inputs = keras.Input((4,))
    keras.Model(inputs, Twice()(inputs)).save(tmp_path / "custom.keras")

    with pytest.raises(BinbotError, match="custom.keras: Keras could not rebuild the model in this checkpoint"):
        load_checkpoint(tmp_path / "custom.keras")


@pytest.mark.parametrize("name, content, expected", [
    ("model.keras", b"hello", r"model.keras: not a Keras checkpoint \(a .keras file is a zip archive; this one is not\)"),
    ("model.h5", b"hello", r"model.h5: not a Keras checkpoint \(a .h5 file is an HDF5 file; this one is not\)"),
    ("model.txt", b"hello", r"model.txt: not a Keras checkpoint \(expected a .keras or .h5 file\)"),
    ("empty.keras", b"", r"empty.keras: not a Keras checkpoint \(a .keras file is a zip archive"),
])
def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path, name, content, expected):
    (tmp_path / name).write_bytes(content)

    with pytest.raises(BinbotError, match=expected) as refused:
        load_checkpoint(tmp_path / name)

    assert "File not found" not in str(refused.value) and "truncated" not in str(refused.value)


def test_missing_checkpoint_or_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(BinbotError, match="absent.keras: checkpoint not found"):
        load_checkpoint(tmp_path / "absent.keras")
    with pytest.raises(BinbotError, match="expected a .keras or .h5"):
        load_checkpoint(tmp_path)


@pytest.fixture(scope="module")
def small_checkpoints(tmp_path_factory):
    """A small model saved in both formats: {suffix: path}."""
    folder = tmp_path_factory.mktemp("checkpoints")
    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 3))
    x = layers.Conv2D(8, 3)(inputs)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(x)))
    paths = {suffix: folder / f"model{suffix}" for suffix in (".keras", ".h5")}
    for path in paths.values():
        model.save(path)
    return paths


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_truncated_checkpoint_says_it_is_truncated_or_corrupt(small_checkpoints, tmp_path, suffix):
    data = small_checkpoints[suffix].read_bytes()
    truncated = tmp_path / f"truncated{suffix}"
    truncated.write_bytes(data[: len(data) // 2])

    with pytest.raises(BinbotError, match=f"truncated{suffix}: not a readable Keras checkpoint, truncated or corrupt") as refused:
        load_checkpoint(truncated)

    assert "File not found" not in str(refused.value)


def test_checkpoint_damaged_inside_its_zip_is_refused_not_loaded(small_checkpoints, tmp_path):
    data = bytearray(small_checkpoints[".keras"].read_bytes())
    weights = data.index(b"model.weights.h5") + 1000  # inside the stored weights, past their header
    data[weights:weights + 64] = bytes(b ^ 0xFF for b in data[weights:weights + 64])
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(bytes(data))

    with pytest.raises(BinbotError, match="damaged.keras: not a readable Keras checkpoint, truncated or corrupt"):
        load_checkpoint(damaged)
