"""The change gate on real footage (footage/README.md): OpenCV's vtest.avi, a fixed outdoor camera with
people walking, an exposure drift and fluttering tape, its regions labelled second by second. The
shipped gate never reuses an answer across a labelled change, and sees a small person cut from one
real frame and placed on another, still or moving; bad labels name their line and field."""

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

from streamwatch.bench.footage import crop, load_footage, replay_gate
from streamwatch.change import ChangeGate, thumbnail
from streamwatch.config import CameraConfig
from streamwatch.inference.types import Answer
from streamwatch.tomlfile import DataFileError

DEFAULTS = CameraConfig(id="x", url="x")  # the shipped change_threshold and max_reuse_s


@pytest.fixture(scope="module")
def vtest() -> tuple[object, list[np.ndarray]]:
    footage = labelled("vtest")
    shown = frames(footage.clip, footage.labels.sample_s)
    assert len(shown) == footage.labels.seconds
    return footage, shown


def test_the_shipped_gate_never_reuses_across_a_labelled_change(vtest: tuple[object, list[np.ndarray]]) -> None:
    footage, shown = vtest
    runs = {
        region.id: replay_gate(
            shown,
            region,
            threshold=DEFAULTS.change_threshold,
            max_reuse_s=DEFAULTS.max_reuse_s,
            sample_s=footage.labels.sample_s,  # type: ignore[attr-defined]
        )
        for region in footage.labels.regions  # type: ignore[attr-defined]
    }
    for run in runs.values():
        assert run.missed == [], (run.region, run.missed)
    assert runs["road"].saved == runs["whole"].saved == 0  # someone always walks there
    # still regions do reuse, exposure drift and all (the share is reported by `bench gating`)
    for still in ("facade", "upper-lawn", "lower-lawn"):
        assert runs[still].saved >= runs[still].still // 2, (still, runs[still].saved, runs[still].still)


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


@pytest.mark.parametrize("region_id", ["facade", "upper-lawn", "lower-lawn"])
def test_a_20_by_40_pixel_person_placed_on_a_still_region_is_asked_about(
    vtest: tuple[object, list[np.ndarray]], region_id: str
) -> None:
    footage, shown = vtest
    (region,) = [r for r in footage.labels.regions if r.id == region_id]  # type: ignore[attr-defined]
    person = _person(shown, (20, 40))
    x0, y0, x1, y1 = region.box
    still = [s for s in range(1, len(shown)) if not region.changed(s)][:12]
    answer = Answer("no", 0.1, 0.0, 1, "test")
    for second in still:  # a different real frame each time
        for fx in (0.1, 0.5, 0.85):
            x = x0 + int((x1 - x0 - 20) * fx)
            y = y0 + max(0, (y1 - y0 - 40) // 2)
            before, after = shown[second - 1], _placed(shown[second], person, x, y)
            gate = ChangeGate()
            gate.remember("r", "q", thumbnail(crop(before, region.box)), 0.0, answer)
            entered = gate.reusable(
                "r", "q", thumbnail(crop(after, region.box)), 1.0, threshold=DEFAULTS.change_threshold, max_reuse_s=30
            )
            assert entered is None, (region_id, second, x)  # walked in: asked
            gate.remember("r", "q", thumbnail(crop(after, region.box)), 1.0, answer)
            moved = _placed(shown[second], person, x + (12 if fx < 0.5 else -12), y)
            walked = gate.reusable(
                "r", "q", thumbnail(crop(moved, region.box)), 2.0, threshold=DEFAULTS.change_threshold, max_reuse_s=30
            )
            assert walked is None, (region_id, second, x)  # moved 12 pixels within the region: asked


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
        [*command, "--threshold", "1", "--out", str(out), "--name", "loose"],
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
