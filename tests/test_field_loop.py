"""The whole field loop, each step the user's own command: a daemon keeps frames, `binbot collect`
copies them over a real sshd, `binbot label`'s API files them, `binbot train` learns from them.

Each step has its own tests (test_keep, test_collect, test_label, test_train); this one checks that
what one command writes is what the next reads.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

from binbot.cli import main
from binbot.device.fieldfolder import DISCARDED, UNLABELLED, frames_here
from binbot.device.kept import kept_ids, read_sidecar
from helpers import TIMEOUT, Client, wait_for

KEPT_AN_HOUR = 12  # of the 36 replayed images: the hourly limit stops the rest


def test_frames_kept_on_the_pi_are_collected_once_labelled_and_trained_on(
        start_daemon, small_cnn_bundles, image_folder, tiny_run, sshd, tmp_path, capsys):
    pi, field = tmp_path / "pi", tmp_path / "field"
    config = tmp_path / "binbot.toml"
    config.write_text(f'bundle = "{small_cnn_bundles["int8"]}"\nsource = "replay:{image_folder}"\nloop = false\n'
                      f'threads = 1\n\n[keep]\ndir = "{pi / "kept"}"\nsample = 1.0\nper_hour = {KEPT_AN_HOUR}\n')

    daemon = start_daemon("--config", str(config))
    assert daemon.process.wait(timeout=TIMEOUT) == 0  # the replay played once
    kept = kept_ids(pi / "kept")
    assert len(kept) == KEPT_AN_HOUR, daemon.log.read_text()
    assert f"keep: {KEPT_AN_HOUR} frames kept in the last hour (per_hour)" in daemon.log.read_text()

    def collect() -> str:
        assert main(["collect", "pi1", "--remote-dir", str(pi), "--out", str(field), "-F", str(sshd["config"])]) == 0
        return capsys.readouterr().out

    assert f"{KEPT_AN_HOUR} new" in collect()
    assert kept_ids(field / UNLABELLED) == kept
    assert "nothing new" in collect()
    assert kept_ids(field / UNLABELLED) == kept

    label = subprocess.Popen([sys.executable, "-m", "binbot", "label", str(field), "--http", "127.0.0.1:0"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = wait_for("binbot label's address", lambda: re.search(r"http://\S+/", label.stdout.readline()))
        client = Client(url.group(0))
        status, state = client.get("/api/frames")
        assert status == 200 and [frame["id"] for frame in state["frames"]] == kept
        true_class = {frame["id"]: Path(frame["origin"]).parent.name  # the replayed file's folder
                      for frame in state["frames"][:-1]}
        for frame_id, name in true_class.items():
            assert client.post("/api/file", {"id": frame_id, "class": name})[0] == 200
        assert client.post("/api/discard", {"id": kept[-1]})[0] == 200
    finally:
        label.terminate()
        label.wait(timeout=TIMEOUT)
    assert len(set(true_class.values())) > 1  # the frames span classes, so one filed into another would show
    assert {frame_id: folder.name for frame_id, folder in frames_here(field).items()} == {
        **true_class, kept[-1]: DISCARDED}
    for frame_id, name in true_class.items():  # each frame moved with its sidecar, which still checks
        frame = read_sidecar(field / name / f"{frame_id}.json")
        assert Path(frame.origin).parent == image_folder / name and (field / name / f"{frame_id}.jpg").is_file()

    run = tmp_path / "retrained"
    assert main(["train", "--data", str(image_folder), "--data", str(field), "--init", str(tiny_run / "model.keras"),
                 "--out", str(run), "--epochs", "1", "--batch-size", "8", "--image-size", "32"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    by_data = metrics["by_data"]
    assert set(by_data) == {image_folder.name, field.name}
    field_images = by_data[field.name]["images"]
    assert field_images["train"] + field_images["validation"] == KEPT_AN_HOUR - 1  # all but the discarded one
