"""`binbot run` end to end: a real subprocess on a replayed folder, real HTTP, a real notify socket."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from binbot.device.bundle import MODEL, load_bundle, read_bundle
from binbot.device.frames import load_model_input
from helpers import TIMEOUT, NotifySocket, log_lines, wait_for


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


@pytest.fixture
def known_images(small_cnn_bundles, image_folder, tmp_path):
    """A replay folder of the photos of each class (folder) that the model gets right with some confidence."""
    loaded = load_bundle(small_cnn_bundles["int8"])
    classifier, names = loaded.classifier, loaded.bundle.class_names
    folder = tmp_path / "known"
    for path in sorted(image_folder.glob("*/*.jpg")):
        scores = classifier.classify(load_model_input(path, classifier.height, classifier.width))
        if names[int(scores.argmax())] == path.parent.name and scores.max() >= 0.6:
            (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / path.parent.name)
    assert sorted(p.name for p in folder.iterdir()) == sorted(names), "the small CNN should get some of each class"
    return folder


def test_events_are_right_and_http_and_systemd_see_the_daemon_serve(start_daemon, notify_socket,
                                                                    small_cnn_bundles, known_images):
    bundle = read_bundle(small_cnn_bundles["int8"])
    daemon = start_daemon("--bundle", str(bundle.path), "--source", f"replay:{known_images}", "--window", "3",
                          "--threshold", "0.5", env={"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "200000"})

    wait_for("READY=1", lambda: notify_socket.received("READY=1"))
    wait_for("WATCHDOG=1", lambda: notify_socket.received("WATCHDOG=1"))
    events = wait_for("events of every class", lambda: (e := daemon.event_lines()) and
                      {x["label"] for x in e} == set(bundle.class_names) and len(e) >= 6 and e)
    # The replay walks bottle/, can/, paper/ in turn: each event's label is the class of the photo in view.
    assert all(Path(e["origin"]).parent.name == e["label"] for e in events), events
    assert all(e["model"] == bundle.id and len(e["top"]) == 3 for e in events)

    status, health = daemon.health()
    assert status == 200 and health["ok"] and health["model"] == bundle.id
    assert health["source"]["state"] == "open" and health["frames"] > 0 and health["last_frame_age"] < 60
    status, metrics = daemon.get("/metrics")
    assert status == 200
    assert float(re.search(r"^binbot_frames_total (\S+)$", metrics, re.M).group(1)) > 0
    for stage in ("capture", "preprocess", "invoke", "postprocess"):
        assert re.search(rf'^binbot_stage_seconds_count{{stage="{stage}"}} [1-9]', metrics, re.M), stage
    status, latest = daemon.get("/latest")
    latest = json.loads(latest)
    assert status == 200 and latest["label"] in bundle.class_names and latest["model"] == bundle.id

    assert daemon.stop() == 0
    assert notify_socket.received("STOPPING=1")


def test_sigterm_finishes_the_frame_flushes_the_events_and_exits_0(start_daemon, small_cnn_bundles, image_folder):
    daemon = start_daemon("--bundle", str(small_cnn_bundles["int8"]), "--source", f"replay:{image_folder}",
                          "--window", "2", "--threshold", "0.4")
    wait_for("a few events", lambda: len(daemon.event_lines()) >= 3)

    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=TIMEOUT) == 0

    text = daemon.events.read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    assert "SIGTERM: finishing and exiting" in daemon.log.read_text()


def test_sighup_switches_to_a_good_bundle_without_a_gap_and_keeps_the_old_on_a_corrupt_one(
        start_daemon, small_cnn_bundles, image_folder, tmp_path):
    old, new = read_bundle(small_cnn_bundles["int8"]), read_bundle(small_cnn_bundles["float32"])
    corrupt = shutil.copytree(new.path, tmp_path / "corrupt")
    model = bytearray((corrupt / MODEL).read_bytes())
    model[len(model) // 2] ^= 0xFF
    (corrupt / MODEL).write_bytes(bytes(model))
    current = tmp_path / "current"
    current.symlink_to(old.path)
    daemon = start_daemon("--bundle", str(current), "--source", f"replay:{image_folder}")
    wait_for("serving", lambda: daemon.health()[0] == 200)

    switch_to(current, new.path)
    daemon.process.send_signal(signal.SIGHUP)
    seen = []
    wait_for("the new model", lambda: seen.append(daemon.health()) or seen[-1][1]["model"] == new.id)
    assert all(status == 200 for status, _ in seen)  # served throughout the reload
    frames = seen[-1][1]["frames"]
    wait_for("frames from the new model", lambda: daemon.health()[1]["frames"] > frames)

    switch_to(current, corrupt)
    daemon.process.send_signal(signal.SIGHUP)
    status, health = wait_for("the reload error", lambda: (h := daemon.health())[1]["reload_error"] and h)
    assert "model.tflite: corrupt or changed since conversion" in health["reload_error"]
    assert status == 200 and health["model"] == new.id
    frames = health["frames"]
    wait_for("frames still classified", lambda: daemon.health()[1]["frames"] > frames)
    assert daemon.stop() == 0
    assert "reload failed, still serving model" in daemon.log.read_text()


def test_a_reload_that_fails_in_a_new_way_reports_the_new_reason(start_daemon, small_cnn_bundles, image_folder,
                                                                   tmp_path):
    """deploy waits for reload_error to change: each failed reload must say its own reason, whatever broke."""
    old = read_bundle(small_cnn_bundles["int8"])
    corrupt, unreadable = (shutil.copytree(old.path, tmp_path / name) for name in ("corrupt", "unreadable"))
    (corrupt / MODEL).write_bytes(b"not a model")
    (unreadable / "labels.txt").write_bytes("bottle\ncan\npaper\n".encode("utf-16"))
    current = tmp_path / "current"
    current.symlink_to(old.path)
    daemon = start_daemon("--bundle", str(current), "--source", f"replay:{image_folder}")
    wait_for("serving", lambda: daemon.health()[0] == 200)

    switch_to(current, corrupt)
    daemon.process.send_signal(signal.SIGHUP)
    first = wait_for("the first reload error", lambda: daemon.health()[1]["reload_error"])
    switch_to(current, unreadable)
    daemon.process.send_signal(signal.SIGHUP)
    second = wait_for("a second, different reload error", lambda: (e := daemon.health()[1]["reload_error"]) != first and e)

    assert "labels.txt: not UTF-8 text" in second
    assert daemon.health()[1]["model"] == old.id
    assert daemon.stop() == 0 and "Traceback" not in daemon.log.read_text()


def test_the_reloader_reports_any_failure_of_a_load_and_stays_ready_for_the_next(caplog):
    import zlib

    from binbot.device.metrics import Metrics
    from binbot.device.reload import Reloader

    def load():
        raise zlib.error("Error -3 while decompressing data: invalid block type")

    logged = log_lines(caplog)
    reloader = Reloader(load, Metrics())
    reloader.start("0123456789ab")
    wait_for("the failed reload to be logged", logged)

    assert "error: Error -3 while decompressing data" in reloader.error and reloader.take() is None
    assert logged()[-1].startswith("reload failed, still serving model 0123456789ab: error: Error -3")


def switch_to(link, target):
    """Repoint a symlink atomically, as a deploy does."""
    fresh = link.with_name(link.name + ".new")
    fresh.symlink_to(target)
    os.replace(fresh, link)


def test_a_source_that_dies_is_reopened_and_health_says_so_meanwhile(start_daemon, small_cnn_bundles,
                                                                     image_folder, tmp_path):
    folder = shutil.copytree(image_folder / "can", tmp_path / "camera")
    daemon = start_daemon("--bundle", str(small_cnn_bundles["int8"]), "--source", f"replay:{folder}")
    wait_for("serving", lambda: daemon.health()[0] == 200)

    folder.rename(tmp_path / "unplugged")
    status, health = wait_for("the source to be reopening", lambda: (h := daemon.health())[1]["source"]["state"]
                              == "reopening" and h)
    assert status == 503 and str(folder) in health["source"]["error"]

    (tmp_path / "unplugged").rename(folder)
    status, health = wait_for("the source back", lambda: (h := daemon.health())[0] == 200 and h)
    assert health["source"]["state"] == "open"
    _, metrics = daemon.get("/metrics")
    assert float(re.search(r"^binbot_source_reopens_total (\S+)$", metrics, re.M).group(1)) >= 1
    assert daemon.stop() == 0


def run_refused(*args):
    result = subprocess.run([sys.executable, "-m", "binbot", "run", "--http", "127.0.0.1:0", *args],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    return lines[-1]


@pytest.mark.parametrize("make, error", [
    (lambda tmp, bundle: ["--bundle", str(tmp / "gone")], "{tmp}/gone: not a bundle folder"),
    (lambda tmp, bundle: ["--bundle", bundle, "--source", f"replay:{tmp}/gone"], "source: {tmp}/gone: no such folder"),
    (lambda tmp, bundle: ["--bundle", bundle, "--source", f"opencv:{tmp}/gone.mp4"], "source: opencv {tmp}/gone.mp4: "
                                                                                     "cannot open"),
    (lambda tmp, bundle: ["--config", write_config(tmp, f'bundle = "{bundle}"\n[mqtt]\nhost = \n')],
     "{tmp}/binbot.toml: not valid TOML"),
    (lambda tmp, bundle: ["--config", write_config(tmp, f'bundle = "{bundle}"\n[mqtt]\nport = 1883\n')],
     "{tmp}/binbot.toml: [mqtt] needs host"),
])
def test_a_failure_at_start_up_is_one_line_and_a_non_zero_exit(tmp_path, small_cnn_bundles, make, error):
    result = subprocess.run([sys.executable, "-m", "binbot", "run", "--http", "127.0.0.1:0", "--events", os.devnull,
                             *make(tmp_path, str(small_cnn_bundles["int8"]))], capture_output=True, text=True,
                            timeout=TIMEOUT)

    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(errors) == 1 and errors[0].startswith("binbot run: error: " + error.format(tmp=tmp_path)), result.stderr


def write_config(folder, text):
    (folder / "binbot.toml").write_text(text)
    return str(folder / "binbot.toml")


def test_an_unknown_config_key_is_refused_naming_it(tmp_path, small_cnn_bundles):
    config = tmp_path / "binbot.toml"
    config.write_text(f'bundle = "{small_cnn_bundles["int8"]}"\ntreshold = 0.7\n')
    assert run_refused("--config", str(config)) == (
        f"binbot run: error: {config}: unknown key 'treshold' (known: bundle, source, threads, http, window, threshold, "
        "top_k, loop, fps, stale_after; and the tables [events], [results], [view], [gpio], [mqtt], [keep])")


def test_a_corrupt_bundle_is_refused_before_serving(tmp_path, small_cnn_bundles):
    bundle = shutil.copytree(small_cnn_bundles["int8"], tmp_path / "bundle")
    (bundle / "labels.txt").write_text("bottle\ncan\n")
    message = run_refused("--bundle", str(bundle))
    assert message.startswith("binbot run: error: ") and "labels.txt: has 2 classes but the model outputs 3" in message


def test_without_a_source_the_bundles_own_self_test_frames_are_replayed_once(small_cnn_bundles, tmp_path):
    result = subprocess.run([sys.executable, "-m", "binbot", "run", "--bundle", str(small_cnn_bundles["int8"]),
                             "--http", "off", "--once", "--window", "1", "--threshold", "0"],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and all("selftest.npz[" in e["origin"] for e in events)
    assert "source ended" in result.stderr


def test_classify_prints_top_k_and_agrees_with_the_daemons_per_frame_results(small_cnn_bundles, known_images,
                                                                            tmp_path):
    bundle = str(small_cnn_bundles["int8"])
    printed = subprocess.run([sys.executable, "-m", "binbot", "classify", bundle, str(known_images), "--top-k", "2",
                              "--json", str(tmp_path / "classify.json")], capture_output=True, text=True, timeout=TIMEOUT)
    assert printed.returncode == 0, printed.stderr
    classified = {r["image"]: r for r in json.loads((tmp_path / "classify.json").read_text())["results"]}
    lines = printed.stdout.splitlines()
    assert len(lines) == len(classified) and all(re.fullmatch(r".+\.jpg: \w+ [01]\.\d{3}  \(\w+ [01]\.\d{3}\)", l)
                                                 for l in lines), lines

    ran = subprocess.run([sys.executable, "-m", "binbot", "run", "--bundle", bundle, "--source", f"replay:{known_images}",
                          "--once", "--http", "off", "--results", str(tmp_path / "results.jsonl"), "--top-k", "2"],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert ran.returncode == 0, ran.stderr
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r["origin"] for r in results) == sorted(classified)
    for result in results:  # same preprocessing, same model: the same probabilities
        assert result["top"] == classified[result["origin"]]["top"]
        assert result["label"] == Path(result["origin"]).parent.name


def test_classify_warns_about_an_unreadable_image_classifies_the_rest_and_exits_1(small_cnn_bundles, image_folder,
                                                                                  tmp_path, capsys):
    from binbot.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for name, source in (("a.jpg", "can"), ("c.jpg", "bottle")):
        shutil.copy(sorted((image_folder / source).glob("*.jpg"))[0], photos / name)
    (photos / "b.jpg").write_bytes(b"half a jpeg")

    code = main(["classify", str(small_cnn_bundles["int8"]), str(photos), "--json", str(tmp_path / "out.json")])

    out, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [
        f"binbot classify: warning: {photos / 'b.jpg'}: not a readable image",
        "binbot classify: error: 1 of 3 images could not be classified (see the warnings above)",
    ]
    assert [line.split(":")[0] for line in out.splitlines()] == [str(photos / "a.jpg"), str(photos / "c.jpg")]
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    assert [r["image"] for r in results] == [str(photos / name) for name in ("a.jpg", "b.jpg", "c.jpg")]
    assert results[1] == {"image": str(photos / "b.jpg"), "error": "not a readable image"}
    assert "label" in results[0] and "label" in results[2]


def test_classify_replaces_its_json_file_whole_instead_of_rewriting_it(small_cnn_bundles, image_folder, tmp_path):
    from binbot.cli import main

    out = tmp_path / "out.json"
    out.write_text("{}\n")
    before = out.stat().st_ino

    assert main(["classify", str(small_cnn_bundles["int8"]), str(image_folder / "can"), "--json", str(out)]) == 0

    assert out.stat().st_ino != before  # a new file renamed into place: readers never see half of it
    assert len(json.loads(out.read_text())["results"]) == len(list((image_folder / "can").glob("*.jpg")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_classify_into_a_missing_folder_is_a_one_line_error(small_cnn_bundles, image_folder, tmp_path, capsys):
    from binbot.cli import main

    out = tmp_path / "nowhere" / "out.json"
    assert main(["classify", str(small_cnn_bundles["int8"]), str(image_folder / "can"), "--json", str(out)]) == 1

    assert capsys.readouterr().err == f"binbot classify: error: {out}: cannot write there (No such file or directory)\n"


@pytest.fixture
def hung_camera(tmp_path):
    """A camera that hangs as it opens: OpenCV blocks opening a FIFO until something writes to it."""
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    return fifo


def feed_video(fifo, frames=200):
    """Start a 'camera' writing an MJPEG video into fifo (the writer thread ends when the reader does)."""
    import threading

    import cv2
    import numpy as np

    def write():
        writer_path = fifo.with_suffix(".avi")
        video = cv2.VideoWriter(str(writer_path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
        for n in range(frames):
            video.write(np.full((48, 64, 3), n % 256, np.uint8))
        video.release()
        try:
            with open(fifo, "wb") as out:
                out.write(writer_path.read_bytes())
        except BrokenPipeError:
            pass

    threading.Thread(target=write, daemon=True).start()


def test_a_hung_camera_gets_no_ready_no_watchdog_and_no_latest_until_frames_come(start_daemon, notify_socket,
                                                                                  small_cnn_bundles, hung_camera):
    daemon = start_daemon("--bundle", str(small_cnn_bundles["int8"]), "--source", f"opencv:{hung_camera}",
                          env={"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "200000"})

    assert daemon.get("/latest") == (404, '{"error": "no frame classified yet"}')
    status, health = daemon.health()
    assert status == 503 and health["frames"] == 0
    wait_for("five watchdog intervals", lambda: daemon.health()[1]["uptime"] >= 1.0)
    assert notify_socket.received("WATCHDOG=1") == [] and notify_socket.received("READY=1") == []

    feed_video(hung_camera)  # the camera comes to life: now the daemon is ready and petting the watchdog
    wait_for("READY=1", lambda: notify_socket.received("READY=1"))
    wait_for("WATCHDOG=1", lambda: notify_socket.received("WATCHDOG=1"))
    assert daemon.get("/latest")[0] == 200
    assert daemon.stop() == 0


def test_sigterm_while_the_camera_hangs_exits_0_within_the_deadline(start_daemon, small_cnn_bundles, hung_camera):
    daemon = start_daemon("--bundle", str(small_cnn_bundles["int8"]), "--source", f"opencv:{hung_camera}")
    wait_for("a second of waiting on the camera", lambda: daemon.health()[1]["uptime"] >= 1.0)
    assert daemon.health()[1]["source"]["state"] == "starting"  # still inside the camera's open

    daemon.process.send_signal(signal.SIGTERM)

    assert daemon.process.wait(timeout=10) == 0  # the capture thread is abandoned after CAPTURE_DEADLINE
    log = daemon.log.read_text()
    assert "SIGTERM: finishing and exiting" in log and "Traceback" not in log


def test_sighup_to_a_bundle_with_other_classes_and_input_size(start_daemon, small_cnn_bundles, other_bundle,
                                                              image_folder, tmp_path):
    old, new = read_bundle(small_cnn_bundles["int8"]), read_bundle(other_bundle)
    assert (new.class_names, new.height) != (old.class_names, old.height)
    current = tmp_path / "current"
    current.symlink_to(old.path)
    daemon = start_daemon("--bundle", str(current), "--source", f"replay:{image_folder}", "--window", "2",
                          "--threshold", "0.3")
    wait_for("events from the first model", lambda: len(daemon.event_lines()) >= 2)

    switch_to(current, new.path)
    daemon.process.send_signal(signal.SIGHUP)
    status, health = wait_for("the new model", lambda: (h := daemon.health())[1]["model"] == new.id and h)
    frames = health["frames"]
    wait_for("frames from the new model", lambda: daemon.health()[1]["frames"] > frames + 5)

    latest = json.loads(daemon.get("/latest")[1])
    assert latest["model"] == new.id and {t["label"] for t in latest["top"]} == set(new.class_names)
    later = wait_for("events from the new model", lambda: [e for e in daemon.event_lines() if e["model"] == new.id])
    assert all(e["label"] in new.class_names and len(e["top"]) == 2 for e in later)
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log.read_text()


def test_an_ipv6_address_is_served(start_daemon, small_cnn_bundles):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    daemon = start_daemon("--bundle", str(small_cnn_bundles["int8"]), "--http", "[::1]:0")

    assert daemon.url.startswith("http://[::1]:")
    assert wait_for("serving", lambda: daemon.health()[0] == 200)
    assert daemon.stop() == 0


def test_an_ipv6_address_without_brackets_is_refused(small_cnn_bundles):
    assert run_refused("--bundle", str(small_cnn_bundles["int8"]), "--http", "::1:8080") == (
        "binbot run: error: command line: http = '::1:8080': an IPv6 address goes in brackets, as [::1]:8080")
