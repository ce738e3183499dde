"""The change gate on real footage (footage/README.md): OpenCV's vtest.avi, a fixed outdoor camera with
people walking, an exposure drift and fluttering tape, its regions labelled second by second. The
shipped gate never reuses an answer across a labelled change, as recorded or through any camera
degradation, and keeps reusing on the still regions through light, noise, compression and shake (the
floors below: today's gate meets them, the gate before it did not); it sees a small person cut from
one real frame and placed on another, entering or moving, by day and by night, an object appearing
or going and a door opening; bad labels name their line and field."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.footage import LABELS, frames, labelled

from streamwatch.config import CameraConfig
from streamwatch.errors import DataFileError
from streamwatch.inference.types import Answer
from streamwatch.pipeline.change import ChangeGate, view
from streamwatch.tools.bench.footage import crop, load_footage, replay_gate
from streamwatch.tools.demo.camera import KINDS, degraded

DEFAULTS = CameraConfig(id="x", url="x")  # the shipped change_area and max_reuse_s
STILL = ("facade", "upper-lawn", "lower-lawn")


@pytest.fixture(scope="module")
def vtest() -> tuple[object, list[np.ndarray]]:
    footage = labelled("vtest")
    shown = frames(footage.clip, footage.labels.sample_s)
    assert len(shown) == footage.labels.seconds
    return footage, shown


# The least share of a still region's still samples that reuse an answer, per camera degradation, over
# seeds 0-2 (bench/gating-footage.md has the numbers). The gate before change_area reached 79 % on
# noise, 86 % at night, 88 % through H.264, 78 % through exposure steps, 60 % through a drift, 71 %
# under a cloud and 8 % with a shaking camera; the gate before it steadied a shaking picture reached
# 81.2 % at seed 0 (72.5 % at worst over seeds 0-9) with the shaking camera. Rain makes today's gate
# ask at nearly every sample:
# its streaks are as large as the smallest change it must see (a person's legs at night), so nothing
# is asserted for rain beyond missing nothing.
FLOORS = {
    "clean": 88,
    "noise": 88,
    "night": 90,
    "h264": 90,
    "exposure": 88,
    "drift": 88,
    "cloud": 88,
    "jitter": 84,
    "rain": 0,
}


def _runs(footage: object, shown: list[np.ndarray]) -> dict[str, object]:
    return {
        region.id: replay_gate(
            shown,
            region,
            area=DEFAULTS.change_area,
            max_reuse_s=DEFAULTS.max_reuse_s,
            sample_s=footage.labels.sample_s,  # type: ignore[attr-defined]
        )
        for region in footage.labels.regions  # type: ignore[attr-defined]
    }


def test_the_shipped_gate_never_reuses_across_a_labelled_change(vtest: tuple[object, list[np.ndarray]]) -> None:
    footage, shown = vtest
    runs = _runs(footage, shown)
    for run in runs.values():
        assert run.missed == [], (run.region, run.missed)  # type: ignore[attr-defined]
    assert runs["road"].saved == runs["whole"].saved == 0  # type: ignore[attr-defined]  # someone always walks there
    whys = {verdict.why for run in runs.values() for verdict in run.verdicts}  # type: ignore[attr-defined]
    assert whys >= {"first", "reused", "changed", "old"}


@pytest.mark.parametrize("kind", ["clean", *KINDS])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_through_each_camera_degradation_nothing_is_missed_and_still_regions_reuse(
    vtest: tuple[object, list[np.ndarray]], kind: str, seed: int
) -> None:
    footage, shown = vtest
    if kind == "clean" and seed:
        pytest.skip("the clip as recorded has no seed")
    camera = shown if kind == "clean" else degraded(shown, kind, seed)
    runs = _runs(footage, camera)
    for run in runs.values():
        assert run.missed == [], (kind, seed, run.region, run.missed)  # type: ignore[attr-defined]
    for region in STILL:
        run = runs[region]
        still = [r for r, c in zip(run.reused, run.changed, strict=True) if not c]  # type: ignore[attr-defined]
        assert 100 * sum(still) / len(still) >= FLOORS[kind], (kind, seed, region, sum(still), len(still))


def _person(shown: list[np.ndarray], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The woman crossing the near lawn at 56 s, cut out against the same lawn at 50 s (nobody there):
    her pixels and mask, scaled to `size` (width, height) in source pixels."""
    x0, y0, x1, y1 = 174, 353, 246, 536
    now, empty = shown[56][y0:y1, x0:x1].astype(np.int32), shown[50][y0:y1, x0:x1].astype(np.int32)
    mask = (np.sqrt(((now - empty) ** 2).sum(axis=2)) > 45).astype(np.uint8) * 255
    pixels = np.asarray(Image.fromarray(now.astype(np.uint8)).resize(size, Image.Resampling.BILINEAR))
    small = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.BILINEAR)) > 127
    assert small.sum() > 0.25 * size[0] * size[1]  # a person, not a speck
    return pixels, small


def _placed(frame: np.ndarray, person: tuple[np.ndarray, np.ndarray], x: int, y: int) -> np.ndarray:
    pixels, mask = person
    out = frame.copy()
    height, width = mask.shape
    out[y : y + height, x : x + width][mask] = pixels[mask]
    return out


def _asked(before: np.ndarray, after: np.ndarray, box: list[int]) -> bool:
    """Whether the shipped gate, holding an answer for `before`, asks again for `after` a second later."""
    gate = ChangeGate()
    gate.remember("r", "q", view(crop(before, box)), 0.0, Answer("no", 0.1, 0.0, 1, "test"))
    verdict = gate.judge("r", "q", view(crop(after, box)), 1.0, area=DEFAULTS.change_area, max_reuse_s=30)
    return verdict.answer is None


@pytest.mark.parametrize("kind", ["clean", "night", "jitter"])
@pytest.mark.parametrize("region_id", STILL)
def test_a_20_by_40_pixel_person_placed_on_a_still_region_is_asked_about(
    vtest: tuple[object, list[np.ndarray]], region_id: str, kind: str
) -> None:
    footage, shown = vtest
    (region,) = [r for r in footage.labels.regions if r.id == region_id]  # type: ignore[attr-defined]
    person = _person(shown, (20, 40))
    x0, y0, x1, y1 = region.box
    still = [s for s in range(1, len(shown)) if not region.changed(s)][:8]
    for second in still:  # a different real frame each time
        for fx in (0.1, 0.5, 0.85):
            x = x0 + int((x1 - x0 - 20) * fx)
            y = y0 + max(0, (y1 - y0 - 40) // 2)
            moved = _placed(shown[second], person, x + (12 if fx < 0.5 else -12), y)
            before, entered, walked = _camera([shown[second - 1], _placed(shown[second], person, x, y), moved], kind)
            assert _asked(before, entered, region.box), (region_id, kind, second, x)  # walked in: asked
            assert _asked(entered, walked, region.box), (region_id, kind, second, x)  # moved 12 pixels: asked


def _camera(frames: list[np.ndarray], kind: str) -> list[np.ndarray]:
    return frames if kind == "clean" else degraded(frames, kind, seed=len(frames))


@pytest.mark.parametrize("region_id", STILL)
def test_an_object_appearing_or_going_is_asked_about(vtest: tuple[object, list[np.ndarray]], region_id: str) -> None:
    """A parcel (30 x 24 source pixels, cut from the road's dark tarmac) is put down, then taken away."""
    footage, shown = vtest
    (region,) = [r for r in footage.labels.regions if r.id == region_id]  # type: ignore[attr-defined]
    x0, y0, x1, y1 = region.box
    parcel = shown[3][420:444, 600:630]
    for second in [s for s in range(1, len(shown)) if not region.changed(s)][:6]:
        x, y = x0 + (x1 - x0) // 3, y0 + max(0, (y1 - y0 - 24) // 2)
        with_parcel = shown[second].copy()
        with_parcel[y : y + 24, x : x + 30] = parcel[: min(24, y1 - y), :]
        assert _asked(shown[second - 1], with_parcel, region.box), (region_id, second)  # put down
        assert _asked(with_parcel, shown[second], region.box), (region_id, second)  # taken away


def test_a_door_opening_in_the_facade_is_asked_about(vtest: tuple[object, list[np.ndarray]]) -> None:
    """A window of the building (about 25 x 45 source pixels) opens into a dark room, a little or wide."""
    footage, shown = vtest
    (facade,) = [r for r in footage.labels.regions if r.id == "facade"]  # type: ignore[attr-defined]
    for second, width in ((5, 8), (30, 14), (70, 25)):
        opened = shown[second].copy()
        room = opened[30:75, 360 : 360 + width].astype(np.int32)
        opened[30:75, 360 : 360 + width] = np.clip(room // 3, 0, 255).astype(np.uint8)
        assert _asked(shown[second - 1], opened, facade.box), (second, width)
        assert _asked(opened, shown[second], facade.box), (second, width)  # and closed again


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[regions]]\nid = 'a'\nbox = [10, 0, 5, 4]\n", "clip.toml:5: regions[0]: box is x0, y0, x1, y1"),
        ("[[regions]]\nid = 'a'\nbox = [0, 0, 5, 4]\nchanges = [[5, 2]]\n", "clip.toml:5: regions[0]: each change is"),
        ("[[regions]]\nid = 'a'\nbox = [0, 0, 5, 4]\ncolour = 'red'\n", "clip.toml:8: regions[0].colour: unknown key"),
        ("[[regions]]\nid = 'A B'\nbox = [0, 0, 5, 4]\n", "clip.toml:6: regions[0].id: String should match pattern"),
    ],
)
def test_bad_labels_name_their_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "clip.toml"
    path.write_text(f"clip = 'x.avi'\nsample_s = 1.0\nseconds = 10\n\n{text}", encoding="utf-8")
    with pytest.raises(DataFileError, match=re.escape(expected)):
        load_footage(path)


def test_bench_gating_footage_reports_each_region_and_says_what_is_missing(tmp_path: Path) -> None:
    labels = labelled("vtest")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "streamwatch", "bench", "gating-footage", str(LABELS / "vtest.toml")]
    result = subprocess.run(
        [*command, "--degrade", "exposure", "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "gating-footage.json").read_text())
    regions = [r.id for r in labels.labels.regions]
    assert [(row["camera"], row["region"]) for row in data["regions"]] == [
        (camera, region) for camera in ("clean", "exposure") for region in regions
    ]
    assert data["missed"] == 0 and all(row["samples"] == 80 for row in data["regions"])
    unknown = subprocess.run([*command, "--degrade", "fog"], capture_output=True, text=True, timeout=300)
    assert unknown.returncode == 2 and "expected some of noise,night" in unknown.stderr
    assert "Labelled changes missed: **0**" in (out / "gating-footage.md").read_text()
    # a gate loosened until nothing is asked misses the people: the report says so
    loose = subprocess.run(
        [*command, "--area", "1000000", "--out", str(out), "--name", "loose"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loose.returncode == 0, loose.stderr
    lawn = {row["region"]: row for row in json.loads((out / "loose.json").read_text())["regions"]}["lower-lawn"]
    assert lawn["missed"] > 0 and set(lawn["missed_at"]) <= set(range(54, 62)) | set(range(66, 74))
    missing = tmp_path / "gone.toml"
    missing.write_text((LABELS / "vtest.toml").read_text().replace("../real/vtest.avi", "nowhere.avi"))
    refused = subprocess.run([*command[:-1], str(missing)], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "nowhere.avi is missing: run scripts/fetch-footage.sh" in refused.stderr
    assert "Traceback" not in refused.stderr
