"""Change gating: a rule's last answer is reused while its picture stands still, never longer than
max_reuse_s; sensor noise does not count as change, a moving object does, a brightness drift is bounded
by max_reuse_s; and on the three demo clips the demo model raises the same alerts with gating on as
with it off, with fewer model passes."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from support.helpers import REPO

from streamwatch.alerts.pipeline import AlertPipeline
from streamwatch.change import ChangeGate, change_score, thumbnail
from streamwatch.config import load_settings
from streamwatch.inference.build import build_backend
from streamwatch.inference.engine import Engine, loaded_model
from streamwatch.inference.types import Answer
from streamwatch.ingest.frame import Frame
from streamwatch.metrics import Metrics
from streamwatch.rules.loader import ActiveRules, configured_rules
from streamwatch.sampling import AnswerLog, Sampler
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore

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


def samples(clip: Path, every_s: float = 2.0) -> list[tuple[float, np.ndarray]]:
    """(seconds into the clip, RGB frame) every `every_s` of the clip, as a camera sampled it."""
    found, due = [], 0.0
    with av.open(str(clip)) as container:
        for frame in container.decode(container.streams.video[0]):
            if float(frame.time) >= due:
                found.append((float(frame.time), frame.to_ndarray(format="rgb24")))
                due += every_s
    return found


async def replay(tmp_path: Path, gating: bool) -> tuple[list[tuple[str, str, str, float]], Counter[str]]:
    """Each demo clip sampled every 2 s through the real sampler, engine (the shipped demo model) and
    alert pipeline; returns the alert events (camera, rule, kind, seconds into the clip) and answers."""
    settings = load_settings(REPO / "config.toml")
    store = EventStore(Database.open(f"sqlite:///{tmp_path / f'events-{gating}.db'}"), tmp_path / "snapshots")
    events: list[tuple[str, str, str, float]] = []
    metrics = Metrics(lambda: (None, []))
    async with loaded_model(settings, build_backend) as model:
        engine = Engine(settings, model)
        rules = ActiveRules(configured_rules(settings, engine.limits))
        async with engine.answering():
            for camera in settings.cameras:
                camera = camera if gating else camera.model_copy(update={"change_threshold": 0.0})
                pipeline = AlertPipeline(store)
                sampler = Sampler(
                    camera,
                    None,
                    rules=rules,
                    engine=engine,
                    pipeline=pipeline,  # type: ignore[arg-type]
                    answers=AnswerLog(),
                    metrics=metrics,
                )
                due = [r for r in rules.for_camera(camera) if r.active_hours is None and r.schedule is None]
                for seq, (pts, pixels) in enumerate(samples(Path(camera.url))):
                    frame = Frame(camera.id, seq, 1_000_000.0 + pts, pixels, pts, True)
                    before = pipeline.events
                    await sampler.answer(frame, frame.image(), due)
                    if pipeline.events > before:
                        events += [
                            (e.camera, e.rule, e.kind, round(e.frame_at.timestamp() - 1_000_000.0))
                            for e in store.list(limit=pipeline.events - before)
                        ]
    answers: Counter[str] = Counter()
    for (_camera, how), value in _counts(metrics).items():
        answers[how] += int(value)
    return sorted(events), answers


def _counts(metrics: Metrics) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "streamwatch_answers_total":
                key = (sample.labels["camera"], sample.labels["how"])
                found[key] = found.get(key, 0.0) + sample.value
    return found


@pytest.mark.slow
def test_the_demo_clips_raise_the_same_alerts_with_fewer_model_passes(tmp_path: Path) -> None:
    with_gate, asked_with = asyncio.run(replay(tmp_path, gating=True))
    without, asked_without = asyncio.run(replay(tmp_path, gating=False))
    assert with_gate == without and {kind for *_, kind, _at in with_gate} >= {"open", "resolved"}
    assert asked_without["reused"] == 0 and asked_with["reused"] > 0
    assert asked_with["asked"] + asked_with["reused"] == asked_without["asked"]  # the same decisions, fewer passes
    print(
        f"\nmodel passes: {asked_without['asked']:.0f} without gating, {asked_with['asked']:.0f} with "
        f"({asked_with['reused']:.0f} answers reused)"
    )
