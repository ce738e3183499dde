"""`streamwatch bench model` on the CPU with the tiny model: the harness runs, counts FLOPs right, reports."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from streamwatch.inference.types import Answer, Prompt
from streamwatch.pipeline.change import ChangeGate, view
from streamwatch.tools.bench.model import QUESTION, ModelBenchConfig, build, flops_per_frame, frames
from streamwatch.tools.bench.pipeline import steady_ask_share


def test_bench_model_writes_a_report_comparing_naive_and_batched(tmp_path: Path) -> None:
    args = [
        "--size",
        "tiny",
        "--resolutions",
        "640x360",
        "--batches",
        "1,2,4",
        "--reps",
        "2",
        "--naive-frames",
        "2",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "streamwatch", "bench", "model", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "model.json").read_text())
    runs = report["runs"]
    assert [(r["mode"], r["batch"]) for r in runs] == [
        ("naive", 1),
        ("batched", 1),
        ("batched", 2),
        ("batched", 4),
        ("shared3", 1),
        ("shared3", 2),
        ("shared3", 4),
    ]
    for run in runs:
        assert run["frames_per_s"] > 0 and run["latency_p50_ms"] > 0 and run["tflop_per_frame"] >= 0
        assert run["tokens_per_frame"] > 10 and run["patches_per_frame"] > 0
        assert run["mfu"] is None and run["service_mfu"] is None  # no known peak on a CPU
    assert all(r["workers2_frames_per_s"] > 0 for r in runs[1:]) and runs[0]["workers2_frames_per_s"] is None
    assert all(r["decisions_per_s"] == pytest.approx(3 * r["frames_per_s"], rel=0.02) for r in runs[4:])
    assert "| 640x360 | naive | 1 |" in (tmp_path / "model.md").read_text()
    assert (tmp_path / "model.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("resolution", [(640, 360), (320, 240)])
def test_the_flop_count_behind_mfu_matches_torchs_flop_counter(tmp_path: Path, resolution: tuple[int, int]) -> None:
    backend = build(ModelBenchConfig(size="tiny", device="cpu"), tmp_path)
    image = frames(*resolution, 1)[0]
    inputs = backend.yes_no_inputs([Prompt(image, QUESTION)])
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        backend.model(**inputs, logits_to_keep=1)
    ours = flops_per_frame(backend.model, int(inputs["input_ids"].shape[1]), int(inputs["pixel_values"].shape[0]))
    # ours also counts the small non-matmul layers' weights (norms, biases): within 15 %
    assert ours == pytest.approx(counter.get_total_flops(), rel=0.15)


def test_bench_pipeline_finds_how_many_cameras_fit_the_latency_target(tmp_path: Path) -> None:
    args = [
        "--size",
        "tiny",
        "--frame",
        "640x360",
        "--model-sides",
        "224",
        "--cameras",
        "1,2",
        "--interval",
        "1",
        "--seconds",
        "3",
        "--warmup",
        "1",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "streamwatch", "bench", "pipeline", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "pipeline.json").read_text())
    one, two = report["runs"]
    assert (one["cameras"], two["cameras"]) == (1, 2)
    for run in (one, two):  # what was measured is reported consistently; how fast it was is not a test's business
        assert run["decisions"] > 0 and run["dropped"] >= 0 and run["mean_batch"] >= 1
        assert 0 < run["latency_p50_ms"] <= run["latency_p95_ms"]
        assert run["within_slo"] == (run["latency_p95_ms"] <= 1500 and run["dropped"] == 0)
    within = [run["cameras"] for run in (one, two) if run["within_slo"]]
    assert report["largest_within_slo"] == ({"224": max(within)} if within else {})
    assert (tmp_path / "pipeline.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_pipeline_compares_the_same_still_pictures_with_and_without_change_gating(tmp_path: Path) -> None:
    args = ["--size", "tiny", "--frame", "320x180", "--model-sides", "224", "--cameras", "1", "--interval", "0.5"]
    args += ["--seconds", "3", "--warmup", "1", "--activity", "0", "--gating", "both", "--gated-cameras", "2"]
    args += ["--out", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-m", "streamwatch", "bench", "pipeline", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "pipeline.json").read_text())
    off, on = report["runs"]
    assert (off["gating"], on["gating"]) == (False, True)
    assert (off["cameras"], on["cameras"]) == (1, 2)  # --gated-cameras: the gated sweep's own counts
    assert "not longer than max_reuse_s" in result.stderr  # a 1 s warm-up measures the start, and says so
    assert off["decisions"] > 0 and off["asked"] == off["decisions"]  # every decision took a model pass
    # a picture that never changes is asked about once per rule (during the warm-up), then its answers are reused
    assert on["decisions"] > 0 and on["asked"] < on["decisions"]
    assert set(report["largest_within_slo"]) == {"224", "224 gating"}
    assert "change gating" in (tmp_path / "pipeline.md").read_text()


def test_bench_levers_reports_each_lever_and_how_far_answers_move(tmp_path: Path) -> None:
    args = [
        "--size",
        "tiny",
        "--frame",
        "224x112",
        "--frames",
        "2",
        "--reps",
        "1",
        "--peak-tflops",
        "1",
        "--steps",
        "plain,no-kv-cache,fused-kernels,fp8",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "streamwatch", "bench", "levers", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    levers = json.loads((tmp_path / "levers.json").read_text())["levers"]
    chain = {lever["name"]: lever for lever in levers if lever["group"] == "chain"}
    assert list(chain) == ["plain", "no-kv-cache", "fused-kernels", "fp8"]
    # measured speeds only exist (a busy machine may round them to 0): the harness, not the speed, is tested here
    assert all(
        lever["ms_per_frame"] >= 0 and lever["mfu"] is not None and lever["mfu"] >= 0 for lever in chain.values()
    )
    assert chain["plain"]["p_yes_drift"] == 0
    assert chain["fused-kernels"]["p_yes_drift"] < 1e-4  # the same function (fp32 on the CPU)
    assert 0 < chain["fp8"]["p_yes_drift"] < 0.05  # quantised: close, not equal
    assert {lever["name"] for lever in levers if lever["group"] == "preprocess"} == {
        "checkpoint processor (CPU)",
        "torch_images (cpu)",
    }
    roi = [lever for lever in levers if lever["group"] == "roi"]
    assert roi[0]["extra"]["tokens"] >= roi[1]["extra"]["tokens"] > roi[2]["extra"]["tokens"]
    assert "| chain | fused-kernels |" in (tmp_path / "levers.md").read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "streamwatch", "bench", "levers", "--steps", "warp-drive"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "expected steps among plain," in bad.stderr


@pytest.mark.parametrize("activity", [0.0, 0.05, 0.1, 0.5])
def test_the_pipeline_reports_steady_ask_share_is_what_the_change_gate_does(activity: float) -> None:
    """The report's formula for the share of gated decisions that ask the model, against the gate itself:
    one camera, a sample every 2 s for a simulated day, its picture changing with probability `activity`."""
    gate, rng = ChangeGate(), random.Random(7)
    textures = [np.random.default_rng(seed).integers(40, 220, (72, 128), dtype=np.uint8) for seed in (1, 2)]
    pictures = [view(Image.fromarray(texture)) for texture in textures]  # two different scenes
    picture, asked, samples = 0, 0, 43_200
    for tick in range(samples):
        if rng.random() < activity:
            picture = 1 - picture
        seen, at = pictures[picture], tick * 2.0
        if gate.judge("r", "q", seen, at, area=16, max_reuse_s=30.0).answer is None:
            gate.remember("r", "q", seen, at, Answer("no", 0.1, 0.0, 1, "m"))
            asked += 1
    assert asked / samples == pytest.approx(steady_ask_share(activity, 30.0 / 2.0), rel=0.05)
