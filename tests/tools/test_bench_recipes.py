"""`streamwatch bench finetune-recipes`, small: the same labels train every recipe; the report has a row
per seed and the summary per recipe (the full run's numbers are in bench/finetune-recipes.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.helpers import REPO

from streamwatch.tools.bench.loop_site import make_boards
from streamwatch.tools.bench.recipes import RecipesConfig, figures, gathered, run_bench


@pytest.mark.slow
def test_recipes_are_trained_on_the_same_labels_and_reported_per_seed(tmp_path: Path) -> None:
    recipes = {"2 plain": {"steps": 2, "augment": False}, "2 jittered": {"steps": 2, "augment": True}}
    config = RecipesConfig(
        seeds=(0, 1),
        parallel=2,
        train_good=12,
        train_bridged=8,
        held_good=6,
        held_bridged=4,
        recipes=recipes,
        device="cpu",
        repo=REPO,
        out_dir=tmp_path,
    )
    run_bench(config)
    data = json.loads((tmp_path / "finetune-recipes.json").read_text())
    assert [run["seed"] for run in data["runs"]] == [0, 1]  # two processes, the report in seed order
    for run in data["runs"]:
        assert set(run["recipes"]) == set(recipes) and run["training"]["examples"] >= 1
        for row in [run["base"], *run["recipes"].values()]:
            assert (row["good"], row["bridged"]) == (6, 4) and 0 <= row["false_alerts"] <= 6
    assert set(data["summary"]) == {"base", *recipes}
    text = (tmp_path / "finetune-recipes.md").read_text()
    assert "| 0 |" in text and "| 1 |" in text and "2 jittered" in text and "worst" in text


def test_the_labels_follow_the_loops_rules() -> None:
    boards = make_boards("t", 3, 2, __import__("numpy").random.default_rng(0), REPO)
    config = RecipesConfig(band=0.15)
    scores = [0.99, 0.01, 0.69, 0.95, 0.02]  # an alert, a plain no, an uncertain one, an alert, a plain no
    found = gathered(boards, scores, 0.7, config, seed=0)
    reviews = [e.ref for e in found if e.source == "review"]
    labels = [e.ref for e in found if e.source == "label"]
    assert reviews == [boards[0].key, boards[3].key]  # every alert reviewed
    assert boards[2].key in labels  # within the band: always asked
    assert all(e.truth == bool(b.bridged) for e in found for b in boards if b.key == e.ref)  # answered by truth
    shown = figures(boards, scores, 0.7)
    good = [b for b in boards if not b.bridged]
    assert shown["good"] == len(good) and shown["false_alerts"] == sum(
        1 for b, p in zip(boards, scores, strict=True) if not b.bridged and p >= 0.7
    )
