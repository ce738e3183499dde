"""Change gating: a rule's last answer is reused while its picture stands still, never longer than
max_reuse_s; sensor noise does not count as change, a moving object does, a brightness drift is bounded
by max_reuse_s; and on the three demo clips the demo model raises the same alerts with gating on as
with it off, with fewer model passes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.helpers import REPO

from streamwatch.bench.gating import GatingBenchConfig, run_bench
from streamwatch.change import ChangeGate, change_score, thumbnail
from streamwatch.inference.types import Answer

THRESHOLD = 0.0005  # the default of cameras.change_threshold


def scene(seed: int = 0) -> np.ndarray:
    """A textured still picture, 640x360."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 220, (18, 32, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((640, 360), Image.Resampling.BICUBIC))


def noisy(base: np.ndarray, rng: np.random.Generator, sigma: float) -> Image.Image:
    return Image.fromarray(np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("sigma", [2.0, 4.0, 6.0])
def test_sensor_noise_is_not_change(sigma: float) -> None:
    rng = np.random.default_rng(1)
    base = scene().astype(float)
    first = thumbnail(noisy(base, rng, sigma))
    scores = [change_score(first, thumbnail(noisy(base, rng, sigma))) for _ in range(10)]
    assert max(scores) < THRESHOLD, scores


@pytest.mark.parametrize(("size", "step"), [(12, 6), (20, 10), (40, 30)])
def test_a_moving_object_is_change(size: int, step: int) -> None:
    base = scene()
    before, after = base.copy(), base.copy()
    before[100 : 100 + 2 * size, 200 : 200 + size] = 20  # a dark figure ...
    after[100 : 100 + 2 * size, 200 + step : 200 + step + size] = 20  # ... a few pixels further on
    assert change_score(thumbnail(Image.fromarray(before)), thumbnail(Image.fromarray(after))) >= THRESHOLD


def test_a_brightness_ramp_is_looked_at_again_within_max_reuse_s() -> None:
    gate = ChangeGate()
    answer = Answer("no", 0.1, 0.2, 1, "m")
    base = scene().astype(float)
    asked = []
    for step in range(30):  # one sample every 2 s, the light fading by 1/255 each time (dusk)
        at, picture = 2.0 * step, thumbnail(Image.fromarray(np.clip(base - step, 0, 255).astype(np.uint8)))
        if gate.reusable("r", "q", picture, at, threshold=THRESHOLD, max_reuse_s=30) is None:
            asked.append(at)
            gate.remember("r", "q", picture, at, answer)
    assert asked[0] == 0.0 and all(b - a <= 30 for a, b in itertools.pairwise(asked))
    assert len(asked) < 30  # and not every sample either


def test_reuse_is_bounded_by_time_by_the_question_and_can_be_off() -> None:
    gate = ChangeGate()
    picture = thumbnail(Image.fromarray(scene()))
    answer = Answer("yes", 0.9, 0.2, 3, "m")
    gate.remember("r", "q", picture, 100.0, answer)
    assert gate.reusable("r", "q", picture, 129.0, threshold=THRESHOLD, max_reuse_s=30) == answer
    assert gate.reusable("r", "q", picture, 130.0, threshold=THRESHOLD, max_reuse_s=30) is None  # too old
    assert gate.reusable("r", "q (edited)", picture, 101.0, threshold=THRESHOLD, max_reuse_s=30) is None
    assert gate.reusable("r", "q", picture, 101.0, threshold=0, max_reuse_s=30) is None  # gating off
    assert gate.reusable("r", "q", picture, 101.0, threshold=THRESHOLD, max_reuse_s=0) is None
    assert gate.reusable("other", "q", picture, 101.0, threshold=THRESHOLD, max_reuse_s=30) is None


@pytest.mark.slow
def test_the_demo_clips_raise_the_same_alerts_with_fewer_model_passes(tmp_path: Path) -> None:
    """`streamwatch bench gating` on the shipped config: the report it writes, and the replays under it."""
    lines: list[str] = []
    run_bench(GatingBenchConfig(REPO / "config.toml", tmp_path, "gating"), progress=lines.append)
    report = json.loads((tmp_path / "gating.json").read_text())
    assert report["answers_reused"]["off"] == 0 and report["answers_reused"]["on"] > 0
    assert report["same_alerts"] and report["alerts_on"] == report["alerts_off"]
    assert {kind for *_, kind, _at in report["alerts_on"]} >= {"open", "resolved"}
    for camera in report["cameras"]:  # the same decisions, fewer passes, on every camera
        assert camera["asked_on"] + camera["reused_on"] == camera["asked_off"] == camera["decisions"] > 0
        assert 0 < camera["asked_on"] < camera["asked_off"]
    assert "the same in both runs" in (tmp_path / "gating.md").read_text()
    print("\n" + "\n".join(lines))
