"""`binbot bench` on the tiny bundles: what it reports, that its table and JSON agree, and its errors."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from binbot.cli import main
from binbot.device.bench import measure as bench
from binbot.device.bundle import MODEL, read_bundle, read_selftest_inputs
from binbot.device.source import open_source
from binbot.device.metrics import STAGES
from binbot.device.runtime import Classifier
from helpers import SHARED

REFERENCE = SHARED / "models" / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
ALL_STAGES = (*STAGES, bench.FRAME)


def bench_json(capsys, tmp_path, *args) -> tuple[dict, str]:
    """Run `binbot bench ... --json FILE`; (the JSON report, the text printed on stdout)."""
    out = tmp_path / "bench.json"
    assert main(["bench", *map(str, args), "--runs", "6", "--warmup", "2", "--json", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def assert_every_figure_present_and_positive(result: dict) -> None:
    for stage in ALL_STAGES:
        figures = result["stages_ms"][stage]
        assert 0 < figures["p50"] <= figures["p90"] <= figures["p99"] <= figures["max"], (result["model"], stage)
        assert figures["mean"] > 0
    frame, parts = result["stages_ms"]["frame"]["mean"], (result["stages_ms"][s]["mean"] for s in STAGES[1:])
    assert frame == pytest.approx(sum(parts), rel=1e-6)  # a frame is its preprocess, invoke and postprocess
    assert result["fps"] == pytest.approx(1000 / frame, rel=1e-6)
    for key in ("load_ms", "cpu_use", "peak_rss_mb"):
        assert result[key] > 0, key
    assert result["xnnpack"]["applied"] and 0 < result["xnnpack"]["ops"] <= result["xnnpack"]["of"]
    assert result["runtime"].startswith(("ai-edge-litert", "tflite-runtime", "tensorflow"))


def table_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_bench_reports_every_stage_and_figure_for_each_bundle_and_thread_count(small_cnn_bundles, tmp_path, capsys):
    report, _ = bench_json(capsys, tmp_path, small_cnn_bundles["int8"], small_cnn_bundles["float32"], "--threads", "1,2")

    assert [(r["model"], r["threads"]) for r in report["results"]] == [
        ("int8", 1), ("float32", 1), ("int8", 2), ("float32", 2)]
    for result in report["results"]:
        assert_every_figure_present_and_positive(result)
        assert result["kind"] == "bundle" and result["verify_ms"] > 0  # verified as the daemon does, and timed
        assert result["input"] == f"32x32 {'uint8' if result['model'] == 'int8' else 'float32'}"
    machine = report["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["system"]
    assert report["runtime"] == report["results"][0]["runtime"] and report["bench_peak_rss_mb"] > 0
    assert report["runs"] == 6 and report["warmup"] == 2 and report["compare"] is False
    assert report["source"] == f"replay of {small_cnn_bundles['int8'] / 'selftest.npz'} (in memory)"


def test_table_shows_the_same_figures_as_the_json(small_cnn_bundles, tmp_path, capsys):
    report, text = bench_json(capsys, tmp_path, small_cnn_bundles["int8"], "--threads", "1")
    result = report["results"][0]
    rows = table_rows(text)

    summary = next(row for row in rows if row[:2] == ["int8", "1"] and len(row) > 7)
    # model threads input dtype XNNPACK(n/m ops) load verify fps CPU RSS
    assert summary[2:4] == result["input"].split()
    assert summary[4] == f"{result['xnnpack']['ops']}/{result['xnnpack']['of']}"
    for cell, key in zip(summary[6:], ("load_ms", "verify_ms", "fps")):
        assert float(cell) == pytest.approx(result[key], rel=6e-3), key
    assert summary[9] == f"{100 * result['cpu_use']:.0f}%"
    assert float(summary[10]) == pytest.approx(result["peak_rss_mb"], rel=6e-3)
    for stage in ALL_STAGES:
        row = next(row for row in rows if row[:3] == ["int8", "1", stage])
        figures = result["stages_ms"][stage]
        assert [float(cell) for cell in row[3:]] == pytest.approx(
            [figures["p50"], figures["p90"], figures["p99"], figures["max"]], rel=6e-3), stage
    assert report["machine"]["cpu"] in text and report["runtime"] in text


def test_compare_takes_turns_frame_by_frame_and_a_plain_reference_runs_beside_the_bundles(small_cnn_bundles):
    bundle = read_bundle(small_cnn_bundles["int8"])
    references = [small_cnn_bundles["float32"] / MODEL, small_cnn_bundles["int8"] / MODEL]
    targets = bench.targets_for([bundle.path], references, [1])
    assert [t.name for t in targets] == ["int8", "float32/model", "int8/model"]
    bench.prepare(targets, warmup=1)
    calls = []
    for target in targets:  # a spy: each invoke is recorded, then done as usual
        classifier = target.classifier
        classifier.invoke = lambda real=classifier.invoke, name=target.name: calls.append(name) or real()

    with bench.opened(selftest_frames(bundle)) as source:
        bench.measure(targets, source, runs=3, warmup=1, compare=True)
    names = [t.name for t in targets]
    assert calls == names + names * 3  # one warm-up each, then A B C A B C A B C

    calls.clear()
    with bench.opened(selftest_frames(bundle)) as source:
        bench.measure(targets, source, runs=2, warmup=0, compare=False)
    assert calls == [name for name in names for _ in range(2)]
    for target in targets:
        assert_every_figure_present_and_positive(target.summary())
    assert [t.kind for t in targets] == ["bundle", "reference", "reference"]


def test_compare_and_reference_from_the_command_line(small_cnn_bundles, tmp_path, capsys):
    reference = small_cnn_bundles["float32"] / MODEL
    report, text = bench_json(capsys, tmp_path, small_cnn_bundles["int8"], small_cnn_bundles["dynamic"],
                              "--compare", "--threads", "1", "--reference", reference)
    assert report["compare"] is True and "the models in turn, frame by frame" in text
    assert [r["model"] for r in report["results"]] == ["int8", "dynamic", "model"]
    reference_result = report["results"][2]
    assert reference_result["kind"] == "reference" and reference_result["verify_ms"] is None
    assert_every_figure_present_and_positive(reference_result)
    assert reference_result["input"] == "32x32 float32"


def test_a_plain_model_is_fed_pixels_over_its_input_range(small_cnn_bundles):
    """A plain uint8 model gets the pixels as they are; a float one gets them in [-1, 1]."""
    frame = read_selftest_inputs(read_bundle(small_cnn_bundles["int8"]))[0]
    for mode, expected in (("int8", frame), ("float32", frame / 127.5 - 1)):
        plain = bench.PlainModel(small_cnn_bundles[mode] / MODEL, threads=1)
        plain.set_input(frame)
        fed = plain.input_values()
        np.testing.assert_allclose(fed, expected, atol=1e-6)


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"{REFERENCE} not present")
def test_googles_quantized_mobilenet_as_reference_resizes_the_frames_up_to_its_input(small_cnn_bundles, tmp_path, capsys):
    report, _ = bench_json(capsys, tmp_path, small_cnn_bundles["int8"], "--threads", "1", "--reference", REFERENCE)
    ours, google = report["results"]
    assert google["model"] == REFERENCE.stem and google["input"] == "224x224 uint8"
    assert_every_figure_present_and_positive(google)
    # The 32x32 self-test frames are enlarged to 224x224 for it, which takes longer than copying them as they are.
    assert google["stages_ms"]["preprocess"]["p50"] > ours["stages_ms"]["preprocess"]["p50"]


def test_replay_source_of_images_is_captured_and_resized(small_cnn_bundles, image_folder, tmp_path, capsys):
    report, text = bench_json(capsys, tmp_path, small_cnn_bundles["int8"], "--threads", "1",
                              "--source", f"replay:{image_folder}")
    assert report["source"] == f"replay of {image_folder}"
    assert_every_figure_present_and_positive(report["results"][0])


def test_the_xnnpack_count_excludes_what_the_delegate_does_not_run(small_cnn_bundles):
    delegated, total = Classifier(small_cnn_bundles["float32"] / MODEL, 1).delegated_ops()
    assert delegated == total > 0  # XNNPACK runs every op of a float model
    delegated, total = Classifier(small_cnn_bundles["int8"] / MODEL, 1).delegated_ops()
    assert 0 < delegated < total  # the uint8 <-> int8 QUANTIZE ops at either end stay with TFLite's own kernels
    # TFLite's reference kernels come without the default delegate.
    assert Classifier(small_cnn_bundles["int8"] / MODEL, 1, reference_kernels=True).delegated_ops() == (0, total)


def bench_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "binbot", "bench", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["{missing}"], r"{missing}: not a bundle folder"),
    (["{int8}", "--reference", "{labels}"], r"{labels}: not a TFLite model \(no TFL3 identifier\)"),
    (["{int8}", "--reference", "{int8}"], r"{int8}: a folder, not a .tflite model"),
    (["{int8}", "--threads", "1,zero"], r"--threads '1,zero': give thread counts from 1 to 64"),
    (["{int8}", "--threads", "0"], r"--threads '0': give thread counts from 1 to 64"),
    (["{int8}", "--threads", "2,100000"], r"--threads '2,100000': give thread counts from 1 to 64"),
    (["{int8}", "--runs", "0"], r"--runs 0: must be at least 1"),
    (["{int8}", "--source", "webcam"], r"source 'webcam': not a source"),
    (["{int8}", "--source", "replay:{missing}"], r"source: {missing}: no such folder or video"),
    (["{int8}", "--json", "{missing}/out.json"], r"--json {missing}/out.json: folder {missing} does not exist"),
])
def test_bad_input_is_a_one_line_error(small_cnn_bundles, tmp_path, args, message):
    where = {"missing": str(tmp_path / "nowhere"), "int8": str(small_cnn_bundles["int8"]),
             "labels": str(small_cnn_bundles["int8"] / "labels.txt")}
    result = bench_command(*(arg.format(**where) for arg in args))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("binbot bench: error: "), result.stderr
    assert re.search(message.format(**{k: re.escape(v) for k, v in where.items()}), lines[0]), lines[0]
    assert result.stdout == ""


def selftest_frames(bundle):
    return open_source("selftest:", bundle.height, bundle.width, bundle=bundle.path)
