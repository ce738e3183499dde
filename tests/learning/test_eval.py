"""`streamwatch eval`: the measures (checked by hand on small cases), labelled-clip manifests with their
errors, and the whole command on the shipped demo model over reviewed events, answered label requests
and a labelled clip."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.demo_site import demo_site, label_boards
from support.events import new_event
from support.helpers import REPO

from streamwatch.alerts.recorder import jpeg
from streamwatch.learning.evaluation import scores as metrics
from streamwatch.learning.evaluation.false_alerts import false_alerts
from streamwatch.learning.evaluation.manifest import frames, load_manifest
from streamwatch.store import measures
from streamwatch.store.labels import NewLabelRequest
from streamwatch.tools.demo.dataset import demo_tasks, example
from streamwatch.vocabulary import Label, Verdict


def test_counts_precision_recall_f1_at_a_threshold() -> None:
    p = [0.9, 0.8, 0.7, 0.4, 0.3, 0.2]
    truth = [True, False, True, True, False, False]
    counted = metrics.counts(p, truth, 0.5)
    assert (counted.tp, counted.fp, counted.fn, counted.tn) == (2, 1, 1, 2)
    assert counted.precision == pytest.approx(2 / 3) and counted.recall == pytest.approx(2 / 3)
    assert counted.f1 == pytest.approx(2 / 3) and counted.false_positive_rate == pytest.approx(1 / 3)
    assert metrics.counts(p, truth, 0.95).precision is None  # it never alerts


def test_calibration_error_and_false_alerts_a_day() -> None:
    assert metrics.calibration_error([0.95, 0.95, 0.05, 0.05], [True, True, False, False]) == pytest.approx(0.05)
    assert metrics.calibration_error([0.9, 0.9], [False, False]) == pytest.approx(0.9)
    assert metrics.calibration_error([], []) is None
    # 1 sample every 2 s (43,200 a day); 1 in 100 answers falsely yes; n = m = 1, no cooldown: 100 samples
    # closed on average, then open until the next "no" (1 / 0.99 samples)
    assert false_alerts(0.01, 2.0, 1, 1).openings_per_day == pytest.approx(43_200 / (100 + 1 / 0.99))
    # (the state machine against the evaluator itself: tests/alerts/test_false_alerts.py)


def manifest(tmp_path: Path, body: str, clip: Path | None = None) -> Path:
    if clip is not None:
        shutil.copy(clip, tmp_path / "clip.mp4")
    path = tmp_path / "labels.toml"
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


HEAD = 'clip = "clip.mp4"\ncamera = "line"\nrule = "solder-bridge"\nevery_s = 1\n'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            HEAD + "[[intervals]]\nfrom_s = 3\nto_s = 1\ntruth = 'no'\n",
            ":5: intervals[0]: to_s (1) must be after from_s (3)",
        ),
        (
            HEAD
            + "[[intervals]]\nfrom_s = 0\nto_s = 4\ntruth = 'no'\n[[intervals]]\nfrom_s = 3\nto_s = 5\ntruth = 'yes'\n",
            ":5: intervals: intervals overlap: 0-4 s and 3-5 s",
        ),
        (
            HEAD + "[[intervals]]\nfrom_s = 0\nto_s = 4\ntruth = 'maybe'\n",
            ":8: intervals[0].truth: Input should be 'yes' or 'no'",
        ),
        (HEAD, "labels.toml: intervals: required key is missing"),
        (
            HEAD.replace("every_s = 1", "every_s = 0.05") + "[[intervals]]\nfrom_s = 0\nto_s = 600\ntruth = 'no'\n",
            "at most 10000",
        ),
        (
            HEAD + "colour = 'red'\n[[intervals]]\nfrom_s = 0\nto_s = 1\ntruth = 'no'\n",
            ":5: colour: unknown key",
        ),
        (
            HEAD.replace("clip.mp4", "missing.mp4") + "[[intervals]]\nfrom_s = 0\nto_s = 1\ntruth = 'no'\n",
            ":1: clip: no such file",
        ),
    ],
)
def test_manifests_with_errors_name_file_line_and_field(
    tmp_path: Path, clips: dict[str, Path], body: str, expected: str
) -> None:
    from streamwatch.errors import DataFileError

    path = manifest(tmp_path, body, clips["cam"])
    with pytest.raises(DataFileError) as info:
        load_manifest(path)
    assert any(p.startswith(str(path)) and expected in p for p in info.value.problems), info.value.problems


def test_an_interval_past_the_end_of_the_clip_is_named(tmp_path: Path, clips: dict[str, Path]) -> None:
    from streamwatch.errors import DataFileError

    path = manifest(
        tmp_path,
        HEAD
        + "[[intervals]]\nfrom_s = 0\nto_s = 2\ntruth = 'no'\n[[intervals]]\nfrom_s = 5\nto_s = 30\ntruth = 'yes'\n",
        clips["cam"],
    )
    with pytest.raises(
        DataFileError, match=r"labels.toml:11: intervals\[1\].to_s: the interval ends at 30 s but the clip lasts 8.0 s"
    ):
        list(frames(load_manifest(path)))
    fine = manifest(
        tmp_path,
        HEAD
        + "[[intervals]]\nfrom_s = 0\nto_s = 2\ntruth = 'no'\n[[intervals]]\nfrom_s = 5\nto_s = 7\ntruth = 'yes'\n",
        clips["cam"],
    )
    taken = [(seconds, truth) for seconds, truth, _pixels, _earlier in frames(load_manifest(fine))]
    assert taken == [(0, False), (1, False), (2, False), (5, True), (6, True), (7, True)]


def test_eval_on_the_demo_model_over_reviews_labels_and_a_clip(tmp_path: Path, clips: dict[str, Path]) -> None:
    config, events, labels = demo_site(tmp_path)
    (task,) = [t for t in demo_tasks(REPO / "rules") if t.rule.id == "solder-bridge"]
    rng = np.random.default_rng(5)
    label_boards(labels, 12, rng)  # boards with and without a bridge, labelled by their truth
    labels.add(
        NewLabelRequest("skipped", "line", "solder-bridge", "q", "m", "no", 0.6, 0.7, "uncertain", datetime.now(UTC)),
        b"\xff\xd8x",
    )
    labels.set_label("skipped", Label.SKIP)
    board = Image.fromarray(example(task, rng, "no").image)
    event = events.record(dataclasses.replace(new_event("ev1", camera="line", rule="solder-bridge")), jpeg(board))
    events.review(event.uid, Verdict.FALSE_POSITIVE, "shadow of a pin")
    clip = manifest(tmp_path, HEAD + "[[intervals]]\nfrom_s = 0\nto_s = 3\ntruth = 'no'\n", clips["cam"])

    looser = tmp_path / "looser-rules"  # the change under test: solder-bridge at 0, it alerts on every board
    looser.mkdir()
    for file in (REPO / "rules").glob("*.toml"):
        text = file.read_text()
        if file.name == "defect.toml":
            text = text.replace('answer = "yes_no"\nthreshold = 0.7', 'answer = "yes_no"\nthreshold = 0.0', 1)
        (looser / file.name).write_text(text)
    command = [sys.executable, "-m", "streamwatch", "eval", "-c", str(config), "--clips", str(clip)]
    command += ["--out", str(tmp_path / "out"), "--compare-rules", str(looser), "--fail-on-regression"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # every good board is a false alert: F1 drops
    assert "regression: solder-bridge on line: F1 " in result.stderr
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    a, b = report["candidates"]
    assert b["rules"] == str(looser) and a["model"] == b["model"]
    (row,) = a["rows"]
    assert (row["camera"], row["rule"], row["threshold"]) == ("line", "solder-bridge", 0.7)
    assert row["n"] == 12 + 1 + 4 and row["positives"] == 6 and b["rows"][0]["threshold"] == 0.0
    assert row["sources"] == {"label": 12, "review": 1, str(clip): 4}
    assert a["skipped"] == {}  # the skipped label request is no example; nothing else was left out
    assert row["tp"] + row["fp"] + row["fn"] + row["tn"] == row["n"]
    for key in ("precision", "recall", "f1", "calibration_error"):
        assert row[key] is None or 0 <= row[key] <= 1
    assert row["recall"] >= 0.8  # the demo model finds bridges
    assert b["rows"][0]["recall"] == 1.0 and b["rows"][0]["precision"] == pytest.approx(6 / 17, abs=1e-3)
    assert row["suggested_threshold"] is not None and row["false_alerts_per_day"] is not None
    assert (tmp_path / "out" / "eval.png").read_bytes()[:4] == b"\x89PNG"
    shown = (tmp_path / "out" / "eval.md").read_text()
    assert "| line | solder-bridge | 17 | 6 | 0.7 |" in shown and "## A against B" in shown
    # the deployed candidate's figures are kept for the rules page
    (saved,) = measures.load(events.db)["solder-bridge"]
    assert saved["camera"] == "line" and saved["examples"] == 17 and saved["recall"] == row["recall"]
    assert "saved the figures of 1 rule x camera pairs" in result.stdout


def test_eval_without_labelled_examples_says_how_to_get_some(tmp_path: Path) -> None:
    config, _events, _labels = demo_site(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "streamwatch", "eval", "-c", str(config)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2 and "no labelled examples: review alerts" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("compared", ["folder without a model", "file", "org/no-such-model-offline"])
def test_a_compared_model_that_cannot_load_is_named_as_such(tmp_path: Path, compared: str) -> None:
    config, _events, labels = demo_site(tmp_path)
    label_boards(labels, 4, np.random.default_rng(2))
    target = {"folder without a model": tmp_path / "empty", "file": tmp_path / "model.txt"}.get(compared)
    if compared == "folder without a model":
        (tmp_path / "empty").mkdir()
    elif compared == "file":
        (tmp_path / "model.txt").write_text("not a model")
    given = str(target) if target is not None else compared
    command = [sys.executable, "-m", "streamwatch", "eval", "-c", str(config), "--out", str(tmp_path / "out")]
    result = subprocess.run(
        [*command, "--compare-model", given, "--no-save"],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert f"--compare-model {given}: cannot load it as a model" in result.stderr
    assert "Traceback" not in result.stderr and "AttributeError" not in result.stderr
    assert "model.id" not in result.stderr  # the config's model loaded fine: the compared one is named
