"""Change gating: a rule's last answer is reused while its picture stands still, never longer than
max_reuse_s; what a camera does to a still scene (noise, night, compression, light, shake) is not
change, a moving figure is, through any of them; each verdict says why; and on the three demo clips the
demo model raises the same alerts with gating on as with it off, with fewer model passes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from support.helpers import REPO

from streamwatch.config import CameraConfig
from streamwatch.inference.types import Answer
from streamwatch.pipeline.change import ChangeGate, Verdict, compare, view
from streamwatch.tools.bench.gating import GatingBenchConfig, run_bench
from streamwatch.tools.demo.camera import degraded

AREA = CameraConfig(id="x", url="x").change_area  # the shipped default, source pixels


def scene(seed: int = 0) -> np.ndarray:
    """A textured still picture, 640x360."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 220, (18, 32, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((640, 360), Image.Resampling.BICUBIC))


def area(before: np.ndarray, after: np.ndarray) -> float:
    return compare(view(Image.fromarray(before)), view(Image.fromarray(after))).area


@pytest.mark.parametrize("kind", ["noise", "night", "h264", "exposure", "drift", "cloud", "jitter"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_what_a_camera_does_to_a_still_scene_is_not_change(kind: str, seed: int) -> None:
    """Each degradation (demo/camera.py) over 12 samples of a still scene: no patch reaches the default
    area. The gate before change_area called most of these changed (its score was a share of pixels)."""
    # colours below 190, so that an exposure step does not clip a channel (a clipped channel is not
    # brighter by the same factor: such a step may make the gate ask once, the safe way)
    picture = (scene(seed) * 0.85).astype(np.uint8)
    frames = degraded([picture] * 12, kind, seed)
    first = view(Image.fromarray(frames[0]))
    areas = [compare(first, view(Image.fromarray(frame))).area for frame in frames[1:]]
    assert max(areas) < AREA, (kind, areas)


@pytest.mark.parametrize(("width", "height", "step"), [(20, 40, 10), (20, 40, 30), (12, 24, 12), (40, 80, 20)])
@pytest.mark.parametrize("kind", ["clean", "night", "jitter", "exposure"])
def test_a_moving_figure_is_change_through_any_camera(width: int, height: int, step: int, kind: str) -> None:
    base = scene()
    before, after = base.copy(), base.copy()
    before[100 : 100 + height, 200 : 200 + width] = 20  # a dark figure ...
    after[100 : 100 + height, 200 + step : 200 + step + width] = 20  # ... a few pixels further on
    if kind != "clean":
        before, after = degraded([before, after], kind, seed=3)
        if kind == "exposure":  # the step falls between the two
            before, after = before, degraded([after, after, after], kind)[1]
    assert area(before, after) >= AREA, (width, height, step, kind)


def test_large_frames_keep_the_area_in_source_pixels() -> None:
    """In a 1920 x 1080 frame the gate looks at a 384-wide view; a 20 x 40 figure still counts by its
    source pixels, and shows the same whether the rest of the frame is large or not."""
    rng = np.random.default_rng(5)
    coarse = rng.integers(40, 220, (27, 48, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(coarse).resize((1920, 1080), Image.Resampling.BICUBIC))
    after = big.copy()
    after[500:540, 900:920] = 20
    assert view(Image.fromarray(big)).scale == 5.0
    assert 400 <= area(big, after) <= 4000  # 800 source pixels, blurred over a few more
    assert area(big, big) == 0.0


def test_a_brightness_ramp_is_evened_out_and_still_looked_at_within_max_reuse_s() -> None:
    gate = ChangeGate()
    answer = Answer("no", 0.1, 0.2, 1, "m")
    base = scene().astype(float)
    asked = []
    for step in range(30):  # one sample every 2 s, the light fading by 1 % each time (dusk)
        at = 2.0 * step
        picture = view(Image.fromarray(np.clip(base * (1 - 0.01 * step), 0, 255).astype(np.uint8)))
        verdict = gate.judge("r", "q", picture, at, area=AREA, max_reuse_s=30)
        if verdict.answer is None:
            assert verdict.why in ("first", "old"), verdict  # the light alone is never a change
            asked.append(at)
            gate.remember("r", "q", picture, at, answer)
    assert asked == [0.0, 30.0]


@pytest.mark.parametrize(
    ("before", "after", "why"),
    [
        (0.25, 0.75, "light"),  # a light switched on in a dark room: 3 x
        (0.9, 0.3, "light"),  # ... and off
        (0.7, 0.35, "light"),  # a camera switching to IR night mode: half the light and grey
        (0.5, 0.75, "reused"),  # 1.5 x: an auto-exposure step, evened out
        (0.8, 0.6, "reused"),
    ],
)
def test_a_light_switched_on_or_off_is_asked_about_an_exposure_step_is_not(
    before: float, after: float, why: str
) -> None:
    """A region whose light as a whole jumps by more than 1.6 x is asked about, flat or textured: a
    rule may be about the light itself ("are the lights on after hours?"), and local evening out of the
    light would otherwise hide a uniform change until max_reuse_s."""
    for picture in (scene(4), np.full((360, 640, 3), 200, np.uint8)):
        gate = ChangeGate()
        gate.remember(
            "r", "q", view(Image.fromarray((picture * before).astype(np.uint8))), 0.0, Answer("no", 0, 0, 1, "m")
        )
        now = view(Image.fromarray((picture * after).astype(np.uint8)))
        assert gate.judge("r", "q", now, 2.0, area=AREA, max_reuse_s=30).why == why, (before, after)


def test_reuse_is_bounded_by_time_by_the_question_and_can_be_off() -> None:
    gate = ChangeGate()
    picture = view(Image.fromarray(scene()))
    answer = Answer("yes", 0.9, 0.2, 3, "m")
    assert gate.judge("r", "q", picture, 99.0, area=AREA, max_reuse_s=30).why == "first"
    gate.remember("r", "q", picture, 100.0, answer)
    reused = gate.judge("r", "q", picture, 129.0, area=AREA, max_reuse_s=30)
    assert reused.answer == answer and reused.why == "reused" and reused.area == 0.0
    assert gate.judge("r", "q", picture, 130.0, area=AREA, max_reuse_s=30).why == "old"
    assert gate.judge("r", "q (edited)", picture, 101.0, area=AREA, max_reuse_s=30).why == "question"
    assert gate.judge("r", "q", picture, 101.0, area=0, max_reuse_s=30).why == "off"
    assert gate.judge("r", "q", picture, 101.0, area=AREA, max_reuse_s=0).why == "off"
    assert gate.judge("other", "q", picture, 101.0, area=AREA, max_reuse_s=30).why == "first"
    other_size = view(Image.fromarray(scene()[:200]))
    assert gate.judge("r", "q", other_size, 101.0, area=AREA, max_reuse_s=30).why == "changed"


def test_a_picture_too_noisy_to_tell_is_asked_about() -> None:
    gate = ChangeGate()
    rng = np.random.default_rng(2)
    gate.remember("r", "q", view(Image.fromarray(scene())), 0.0, Answer("no", 0.1, 0.0, 1, "m"))
    snow = np.clip(scene() + rng.normal(0, 60, scene().shape), 0, 255).astype(np.uint8)
    verdict = gate.judge("r", "q", view(Image.fromarray(snow)), 1.0, area=AREA, max_reuse_s=30)
    assert verdict.answer is None and verdict.why == "noisy" and verdict.noise > 6


def test_a_verdict_explains_itself() -> None:
    assert Verdict(None, "changed", 812.4, 1.94, 3.2).describe() == "gate=changed area=812px noise=1.9 age=3s"
    assert Verdict(None, "old", age_s=30.4).describe() == "gate=old age=30s"
    assert Verdict(None, "first").seen() == ("first", None, None)
    assert Verdict(None, "reused", 3.0, 1.5).seen() == ("reused", 3.0, 1.5)
    assert Verdict(None, "light", 0.0, 0.0, 2.0).describe() == "gate=light area=0px noise=0.0 age=2s"


def test_change_threshold_of_old_configs_still_turns_gating_off_and_otherwise_says_it_is_unused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from streamwatch.rules.model import Rule

    off = CameraConfig(id="a", url="x", change_threshold=0)
    assert off.gate_area == 0.0
    with caplog.at_level("WARNING"):
        legacy = CameraConfig(id="b", url="x", change_threshold=0.01)
    assert legacy.gate_area == AREA
    assert "camera b: change_threshold = 0.01 is no longer used" in caplog.text and "change_area" in caplog.text
    camera = CameraConfig(id="c", url="x", change_area=500, max_reuse_s=10)
    assert Rule(id="r", title="R", question="q?").gate(camera) == (500, 10)
    assert Rule(id="r", title="R", question="q?", change_area=50, max_reuse_s=5).gate(camera) == (50, 5)
    assert Rule(id="r", title="R", question="q?", change_threshold=0).gate(camera) == (0, 10)


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


def thin_lines(seed: int) -> np.ndarray:
    """A still picture of sharp thin lines (window frames, railings): where a shaken camera shows most.
    None within 10 pixels of the border: a shake brings new picture in there, which is change."""
    rng = np.random.default_rng(seed)
    picture = np.full((360, 640, 3), 150, np.uint8)
    for _ in range(40):
        x, y = int(rng.integers(10, 590)), int(rng.integers(10, 310))
        picture[y : y + 40, x : x + 2] = 30
        picture[y : y + 2, x : x + 40] = 250
    return picture


def shifted(picture: np.ndarray, dx: float, dy: float) -> np.ndarray:
    height, width = picture.shape[:2]
    move = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    return np.asarray(cv2.warpAffine(picture, move, (width, height), borderMode=cv2.BORDER_REFLECT))


@pytest.mark.parametrize(("dx", "dy"), [(1.5, 0.0), (0.0, -2.0), (2.5, 2.5), (-3.0, 1.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_shaken_picture_is_steadied_and_what_moved_in_it_still_shows(dx: float, dy: float, seed: int) -> None:
    """The whole picture moved by up to 3 source pixels is not change; a figure placed in the shifted
    picture is, and so is a move larger than a shake."""
    still = thin_lines(seed)
    moved = shifted(still, dx, dy)
    assert area(still, moved) < AREA, (dx, dy)
    with_figure = moved.copy()
    with_figure[150:190, 300:320] = 90
    assert area(still, with_figure) >= AREA
    far = shifted(still, 12.0, 0.0)  # more than a shake: the camera moved, the picture changed
    assert area(still, far) >= AREA
