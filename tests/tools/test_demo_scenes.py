"""The synthetic scenes and demo clips: forced facts hold, pictures vary, clips show their events."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest
from support.helpers import REPO

from streamwatch.tools.demo.clips import CLIPS, FPS, SECONDS, event_window, frame_at, truth_at, write_demo_clips
from streamwatch.tools.demo.dataset import DOMAINS, demo_tasks, example, examples

FORCED = [(d.name, rule, keyword) for d in DOMAINS.values() for rule, keyword in d.forces.items()]


@pytest.mark.parametrize(("domain", "rule", "keyword"), FORCED)
def test_forcing_a_fact_draws_a_scene_with_that_truth(domain: str, rule: str, keyword: str) -> None:
    d = DOMAINS[domain]
    choices: dict[str, list[object]] = {"count": [0, 1, 2, 3, 4], "fill": ["empty", "partial", "full"]}
    values = choices.get(keyword, [True, False])
    for seed in range(40):
        for value in values:
            truth = d.truth(d.layout(np.random.default_rng(seed), **{keyword: value}))
            assert truth[rule] == value, (seed, value)


def test_scenes_are_seeded_and_vary_with_the_seed() -> None:
    for d in DOMAINS.values():
        a = d.render(d.layout(np.random.default_rng(1)), np.random.default_rng(2))
        b = d.render(d.layout(np.random.default_rng(1)), np.random.default_rng(2))
        c = d.render(d.layout(np.random.default_rng(3)), np.random.default_rng(2))
        assert a.shape == (360, 640, 3) and a.dtype == np.uint8
        assert np.array_equal(a, b)
        assert np.abs(a.astype(int) - c.astype(int)).mean() > 5  # another layout, colours and placement


def test_a_forced_object_changes_the_picture_where_it_is_drawn() -> None:
    """The same layout with and without the intruder differs: the model has something to look at."""
    from dataclasses import replace

    from streamwatch.tools.demo import perimeter

    yard = perimeter.random_perimeter(np.random.default_rng(4), climbing=True, count=1)
    empty = replace(yard, people=())
    with_person = perimeter.render_perimeter(yard, np.random.default_rng(0), degraded=False)
    without = perimeter.render_perimeter(empty, np.random.default_rng(0), degraded=False)
    changed = np.abs(with_person.astype(int) - without.astype(int)).sum(axis=2) > 30
    assert 300 < changed.sum() < 0.1 * changed.size


def test_examples_cover_every_rule_with_balanced_answers() -> None:
    tasks = demo_tasks(REPO / "rules")
    ids = {t.rule.id for t in tasks}
    assert {
        "fence-climb",
        "empty-shelf-slot",
        "fallen-boxes",
        "forklift-blocking-aisle",
        "solder-bridge",
        "missing-screw",
        "housing-scratch",
        "crowding",
        "shelf-fill",
    } <= ids
    assert all(t.rule.answer != "text" for t in tasks)
    stream = examples(tasks, seed=0)
    drawn = [next(stream) for _ in range(600)]
    climbs = [e.answer for e in drawn if e.rule == "fence-climb"]
    assert len(climbs) > 20 and 0.3 < climbs.count("yes") / len(climbs) < 0.7
    assert len({e.question for e in drawn if e.rule == "fence-climb"}) > 3  # locations vary
    assert all(e.answer == "no" for e in drawn if e.rule == "vehicle-at-gate")


def test_an_impossible_request_is_refused() -> None:
    task = next(t for t in demo_tasks(REPO / "rules") if t.rule.id == "vehicle-at-gate")
    with pytest.raises(AssertionError, match="asked for 'yes' but shows 'no'"):
        example(task, np.random.default_rng(0), "yes")


@pytest.mark.parametrize(
    ("clip", "rule", "window"),
    [
        ("yard", "fence-climb", (18.0, 30.0)),
        ("aisle", "fallen-boxes", (10.0, 42.0)),
        ("aisle", "forklift-blocking-aisle", (22.0, 43.0)),
        ("line", "solder-bridge", (16.0, 24.0)),
        ("line", "missing-screw", (32.0, 40.0)),
        ("line", "housing-scratch", (48.0, 56.0)),
    ],
)
def test_each_clip_shows_its_event_once_then_stops(clip: str, rule: str, window: tuple[float, float]) -> None:
    assert event_window(clip, rule) == pytest.approx(window)
    on = [truth_at(clip, i / FPS)[rule] for i in range(int(SECONDS[clip] * FPS))]
    changes = sum(a != b for a, b in itertools.pairwise(on))
    assert changes == 2 and not on[0] and not on[-1]  # off, on, off: loops start and end calm


def test_demo_clips_are_the_ones_the_generator_writes(tmp_path: Path) -> None:
    """samples/ holds what `streamwatch model demo-clips` writes: same frames (within codec noise)."""
    written = write_demo_clips(tmp_path)
    assert [p.name for p in written] == [f"{name}.mp4" for name in CLIPS]
    for path in written:
        shipped = REPO / "samples" / path.name
        assert shipped.is_file() and shipped.stat().st_size < 1_500_000
        with av.open(str(shipped)) as container:
            stream = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert len(frames) == int(SECONDS[path.stem] * FPS)
        for index in (0, len(frames) // 2):
            expected = frame_at(path.stem, index / FPS, noise_seed=0).astype(int)
            assert np.abs(frames[index].astype(int) - expected).mean() < 6


def test_demo_clips_have_temporal_noise_like_a_real_camera() -> None:
    """Two samples of a still scene differ as a real camera's do (sensor noise that survives H.264),
    not bit for bit as drawings with one fixed noise pattern did (mean difference 0.25, 1 % above 2.4)."""
    for name, still_s in (("yard", 7.0), ("aisle", 9.0), ("line", 7.0)):
        with av.open(str(REPO / "samples" / f"{name}.mp4")) as container:
            frames = [f.to_ndarray(format="gray").astype(np.float32) for f in container.decode(video=0)]
        first, last = 3, int(still_s * FPS)  # from 0.6 s: the first board has been indexed in
        still = frames[first:last]
        assert all(truth_at(name, i / FPS) == truth_at(name, first / FPS) for i in range(first, last))
        diffs = [np.abs(b - a) for a, b in itertools.pairwise(still)]
        assert np.mean([d.mean() for d in diffs]) > 0.45, name
        assert np.mean([np.percentile(d, 99) for d in diffs]) > 4, name
