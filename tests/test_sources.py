"""Frame sources: each delivers RGB uint8, whatever its device's own colour order."""

import re
import sys
import types

import cv2
import numpy as np
import pytest

from binbot.device.bundle import read_bundle, read_selftest_inputs
from binbot.device.frames import resize_to_input
from binbot.device.source import SourceError, open_source
from binbot.device.source_replay import ReplaySource
from binbot.errors import BinbotError

RED, GREEN = (255, 0, 0), (0, 255, 0)


def solid_rgb(colour, height=48, width=64):
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:] = colour
    return frame


def read_all(source, limit=100):
    source.open()
    try:
        frames = []
        while len(frames) < limit and (frame := source.read()) is not None:
            frames.append(frame)
        return frames
    finally:
        source.close()


def assert_close(actual, colour, tolerance=12):
    assert actual.dtype == np.uint8 and actual.ndim == 3 and actual.shape[2] == 3
    assert np.abs(actual.reshape(-1, 3).mean(axis=0) - np.array(colour)).max() < tolerance, actual[0, 0]


def test_replay_of_a_folder_gives_rgb_frames_in_name_order_once(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(solid_rgb(RED), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "b.png"), cv2.cvtColor(solid_rgb(GREEN), cv2.COLOR_RGB2BGR))

    frames = read_all(ReplaySource(tmp_path, loop=False))

    assert [f.origin.rsplit("/", 1)[1] for f in frames] == ["a.png", "b.png"]
    assert tuple(frames[0].rgb[0, 0]) == RED and tuple(frames[1].rgb[0, 0]) == GREEN


def test_replay_loops_by_default(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), solid_rgb(RED))
    assert len(read_all(ReplaySource(tmp_path), limit=5)) == 5


def test_replay_of_an_empty_folder_fails_so_it_can_be_reopened(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        ReplaySource(tmp_path).open()


def write_video(path, colours):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for colour in colours:
        writer.write(cv2.cvtColor(solid_rgb(colour), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_opencv_source_turns_a_real_videos_bgr_into_rgb(tmp_path):
    video = write_video(tmp_path / "red.avi", [RED] * 3)

    source = open_source(f"opencv:{video}", 32, 32)
    source.open()
    try:
        frame = source.read()
    finally:
        source.close()

    assert_close(frame.rgb, RED)


def test_opencv_source_that_runs_out_raises_so_the_daemon_reopens_it(tmp_path):
    source = open_source(f"opencv:{write_video(tmp_path / 'one.avi', [GREEN])}", 32, 32)
    source.open()
    assert_close(source.read().rgb, GREEN)
    with pytest.raises(SourceError, match="no frame"):
        source.read()
    source.close()


def test_replay_of_a_video_is_rgb_too(tmp_path):
    frames = read_all(ReplaySource(write_video(tmp_path / "v.avi", [GREEN, RED]), loop=False))
    assert len(frames) == 2
    assert_close(frames[0].rgb, GREEN)
    assert_close(frames[1].rgb, RED)


class FakePicamera2:
    """Follows picamera2's documented API; like a Pi 4, refuses a non-YUV lores stream when yuv_only."""

    yuv_only = False
    instances: list = []

    def __init__(self):
        self.started = self.closed = False
        self.config = None
        FakePicamera2.instances.append(self)

    def create_preview_configuration(self, main=None, lores=None):
        return {"main": main or {"size": (640, 480), "format": "XBGR8888"}, "lores": lores}

    def configure(self, config):
        if self.yuv_only and config["lores"]["format"] != "YUV420":
            raise RuntimeError("lores stream must be YUV")
        self.config = config

    def start(self):
        self.started = True

    def capture_array(self, name="main"):
        assert name == "lores" and self.started
        width, height = self.config["lores"]["size"]
        rgb = solid_rgb(RED, height, width)
        if self.config["lores"]["format"] == "RGB888":
            return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # picamera2's "RGB888" is B,G,R in numpy
        yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
        return np.pad(yuv, ((0, 0), (0, 16)))  # rows padded to the ISP's stride

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True


@pytest.fixture
def fake_picamera2(monkeypatch):
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.instances = []
    yield FakePicamera2
    FakePicamera2.yuv_only = False


@pytest.mark.parametrize("yuv_only, lores_format", [(False, "RGB888"), (True, "YUV420")])
def test_picamera2_lores_frames_arrive_as_rgb_at_the_model_size(fake_picamera2, yuv_only, lores_format):
    fake_picamera2.yuv_only = yuv_only
    source = open_source("picamera2", 32, 48)
    source.open()
    frame = source.read()
    source.close()

    assert source.format == lores_format
    assert frame.rgb.shape == (32, 48, 3)
    assert_close(frame.rgb, RED, tolerance=4)
    camera = fake_picamera2.instances[-1]
    assert camera.closed and not camera.started


def test_picamera2_missing_is_a_source_error_saying_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails, as without python3-picamera2
    with pytest.raises(SourceError, match="apt install python3-picamera2"):
        open_source("picamera2", 32, 32).open()


@pytest.mark.parametrize("spec", ["webcam", "picamera2:0", "selftest:somewhere"])
def test_unknown_specs_are_refused_naming_the_choices(spec):
    with pytest.raises(BinbotError, match=re.escape(f"source {spec!r}: not a source; use picamera2, opencv:")):
        open_source(spec, 32, 32)


@pytest.mark.parametrize("spec, problem", [("replay:", "replay needs a folder, video or .npz file"),
                                           ("opencv:", "opencv needs a device index, path or URL"),
                                           ("selftest:", "needs a bundle, whose self-test frames it replays")])
def test_a_spec_missing_its_part_says_what_it_needs(spec, problem):
    with pytest.raises(BinbotError, match=re.escape(f"source {spec!r}: {problem}")):
        open_source(spec, 32, 32)


def test_selftest_replays_the_bundles_own_frames_in_memory(small_cnn_bundles):
    bundle = read_bundle(small_cnn_bundles["int8"])
    source = open_source("selftest:", bundle.height, bundle.width, loop=False, bundle=bundle.path)

    frames = read_all(source)

    np.testing.assert_array_equal(np.stack([f.rgb for f in frames]), read_selftest_inputs(bundle))
    assert source.describe() == f"replay of {bundle.path / 'selftest.npz'} (in memory)"


def test_resize_parity_a_replayed_frame_is_what_training_feeds(image_folder):
    pytest.importorskip("tensorflow")
    from binbot.device.imagefolder import scan
    from binbot.train.pipeline import make_dataset

    examples = scan(image_folder).examples[:3]
    trained_on = next(iter(make_dataset(examples, 40, batch_size=3)))[0].numpy()
    source = ReplaySource(image_folder, loop=False)
    source.open()
    replayed = {}
    while (frame := source.read()) is not None:
        replayed[frame.origin] = frame.rgb
    for example, pixels in zip(examples, trained_on):
        np.testing.assert_array_equal(resize_to_input(replayed[str(example.path)], 40, 40), pixels.astype(np.uint8))


def write_png(path, colour):
    cv2.imwrite(str(path), cv2.cvtColor(solid_rgb(colour), cv2.COLOR_RGB2BGR))


def test_replay_passes_over_unreadable_files_and_counts_them(tmp_path):
    write_png(tmp_path / "a.png", RED)
    (tmp_path / "b.png").write_bytes(b"not a png")
    write_png(tmp_path / "c.png", GREEN)
    write_png(tmp_path / "d.png", RED)
    source = ReplaySource(tmp_path, loop=False)
    source.open()
    (tmp_path / "d.png").unlink()  # gone between the listing and the reading

    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)

    assert [f.origin.rsplit("/", 1)[1] for f in frames] == ["a.png", "c.png"]
    assert source.unreadable == 2


def test_a_looped_replay_goes_past_an_unreadable_file_every_time_round(tmp_path):
    write_png(tmp_path / "a.png", RED)
    (tmp_path / "b.png").write_bytes(b"")

    frames = read_all(ReplaySource(tmp_path), limit=4)

    assert [f.origin.rsplit("/", 1)[1] for f in frames] == ["a.png"] * 4


def test_a_folder_with_no_readable_image_fails_after_one_pass(tmp_path):
    for name in ("a.png", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"junk")
    source = ReplaySource(tmp_path)
    source.open()

    with pytest.raises(SourceError, match=re.escape(f"no readable images in {tmp_path} (3 files tried)")):
        source.read()
    assert source.unreadable == 3


def test_a_replay_whose_images_vanish_midway_fails_after_trying_each_once(tmp_path):
    for name, colour in (("a.png", RED), ("b.png", GREEN), ("c.png", RED)):
        write_png(tmp_path / name, colour)
    source = ReplaySource(tmp_path)
    source.open()
    source.read()
    for path in tmp_path.iterdir():
        path.unlink()

    with pytest.raises(SourceError, match="no readable images"):
        source.read()
    assert source.unreadable == 3
