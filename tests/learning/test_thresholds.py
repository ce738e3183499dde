"""The suggested threshold (evaluation/thresholds.py): enough examples of each answer, a margin in
log-odds so it never sits between two single examples, cross-validated figures, and thresholds that
hold on fresh answers drawn from the same source."""

from __future__ import annotations

import math
import random

import pytest

from streamwatch.learning.evaluation import scores as metrics
from streamwatch.learning.evaluation.thresholds import MIN_EACH, logit, sigmoid, suggest


def test_too_few_examples_of_either_answer_suggest_nothing_and_say_what_is_needed() -> None:
    p = [0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.05, 0.15]
    found = suggest(p, [True, True, True, False, False, False, False, False], 0.5)
    assert found.threshold is None and "label 2 more truly-yes" in found.why and "truly-no" not in found.why
    found = suggest([0.9] * 6 + [0.1], [True] * 6 + [False], 0.5)
    assert found.threshold is None and f"label {MIN_EACH - 1} more truly-no" in found.why
    assert suggest([0.9] * 6, [False] * 6, 0.5).threshold is None


def test_a_lone_yes_among_the_nos_does_not_pull_the_threshold_into_a_narrow_gap() -> None:
    """The learning loop's seed 1: one truly-yes board at P 0.0005, every truly-no below 0.0003, the other
    yes answers high: best F1 on these alone sits at 0.000427; a threshold that holds does not."""
    rng = random.Random(3)
    noes = [sigmoid(rng.gauss(logit(0.0001), 0.5)) for _ in range(200)]
    noes = [min(p, 0.0003) for p in noes]
    yeses = [sigmoid(rng.gauss(logit(0.9), 1.0)) for _ in range(30)] + [0.0005]
    p, truth = noes + yeses, [False] * len(noes) + [True] * len(yeses)
    found = suggest(p, truth, 0.7)
    assert found.threshold is not None
    assert found.threshold > 0.0005 * math.e  # above the lone yes by the margin, not between it and the noes
    assert metrics.counts(p, truth, found.threshold).fp == 0


@pytest.mark.parametrize("seed", range(5))
def test_thresholds_hold_on_fresh_answers_from_the_same_source(seed: int) -> None:
    """Overlapping scores: a threshold chosen on 40 + 40 examples keeps its false-positive rate on
    4000 fresh truly-no answers close to what cross-validation said, never far above it."""
    rng = random.Random(seed)

    def draw(n: int, centre: float) -> list[float]:
        return [sigmoid(rng.gauss(centre, 1.5)) for _ in range(n)]

    p = draw(40, 2.0) + draw(40, -2.0)
    truth = [True] * 40 + [False] * 40
    found = suggest(p, truth, 0.5, target_precision=0.9)
    assert found.threshold is not None and found.cv_precision is not None and found.fold_range is not None
    fresh_yes, fresh_no = draw(4000, 2.0), draw(4000, -2.0)
    fresh = metrics.counts(fresh_yes + fresh_no, [True] * 4000 + [False] * 4000, found.threshold)
    assert fresh.precision is not None and fresh.precision >= 0.85  # the target with the margin, on unseen answers
    assert fresh.recall is not None and fresh.recall >= 0.5
    assert found.fold_range[0] <= found.threshold * 3 and found.fold_range[1] >= found.threshold / 3


def test_the_current_threshold_stays_where_it_is_among_the_best_and_rounds_where_it_fits() -> None:
    p = [0.95, 0.97, 0.99, 0.96, 0.98, 0.01, 0.02, 0.03, 0.04, 0.05]
    truth = [True] * 5 + [False] * 5
    assert suggest(p, truth, 0.5).threshold == 0.5  # perfectly separated with room: keep it
    moved = suggest(p, truth, 0.999)  # above every yes: moved into the gap, a round number
    assert moved.threshold is not None and 0.05 < moved.threshold < 0.95
    assert moved.threshold == float(f"{moved.threshold:.3g}")
    assert moved.cv_precision == 1.0 and moved.cv_recall == 1.0 and "5 folds" in moved.why


def test_a_precision_target_takes_the_lowest_threshold_that_keeps_it_within_the_margin() -> None:
    rng = random.Random(0)
    p = [sigmoid(rng.gauss(2, 1)) for _ in range(30)] + [sigmoid(rng.gauss(-2, 1)) for _ in range(30)]
    truth = [True] * 30 + [False] * 30
    strict, loose = suggest(p, truth, 0.5, target_precision=1.0), suggest(p, truth, 0.5, target_precision=0.8)
    assert strict.threshold is not None and loose.threshold is not None
    assert loose.threshold <= strict.threshold
    # the margin: the precision holds at a threshold e times lower in odds too
    lower = sigmoid(logit(strict.threshold) - 1.0 + 1e-6)
    assert metrics.counts(p, truth, lower).precision == 1.0
    same = [0.6] * 6 + [0.6] * 6
    assert suggest(same, [True] * 6 + [False] * 6, 0.5, target_precision=0.9).threshold is None
