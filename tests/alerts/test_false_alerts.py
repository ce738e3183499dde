"""The false-alert figures of `eval` (openings a day, the share of time a false alert is open) against
the alert state machine itself (rules/evaluator), driven by random answers at the false-positive rate:
the figures must not flatter a bad rule (one that says yes to every negative)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from streamwatch.alerts.states import Evaluator
from streamwatch.learning.evaluation.false_alerts import DAY_S, false_alerts
from streamwatch.rules.model import Confirm, Rule
from streamwatch.vocabulary import EventKind

INTERVAL_S = 2.0


def simulated(q: float, n: int, m: int, cooldown_s: float, samples: int, seed: int) -> tuple[float, float]:
    """(openings a day, open share) of the real evaluator over `samples` random answers."""
    rule = Rule(
        id="r", title="R", question="Anything? Answer yes or no.", confirm=Confirm(n=n, m=m), cooldown_s=cooldown_s
    )
    evaluator, rng = Evaluator(update_every_s=1e12), np.random.default_rng(seed)
    openings = open_samples = 0
    for sample, positive in enumerate(rng.random(samples) < q):
        change = evaluator.observe("cam", rule, bool(positive), sample * INTERVAL_S)
        openings += change is not None and change.transition is EventKind.OPEN
        open_samples += evaluator.is_open("cam", "r")
    return openings / (samples * INTERVAL_S / DAY_S), open_samples / samples


@pytest.mark.parametrize(
    ("q", "n", "m", "cooldown_s"),
    [
        (0.05, 1, 1, 0.0),
        (0.2, 2, 3, 0.0),
        (0.2, 2, 3, 30.0),
        (0.5, 3, 5, 10.0),
        (0.1, 1, 3, 60.0),
        (0.35, 4, 8, 0.0),
        (0.6, 2, 2, 6.0),
    ],
)
def test_the_figures_match_the_evaluator_driven_by_random_answers(q: float, n: int, m: int, cooldown_s: float) -> None:
    figures = false_alerts(q, INTERVAL_S, n, m, cooldown_s)
    runs = [simulated(q, n, m, cooldown_s, 60_000, seed) for seed in (11, 12, 13)]
    openings = float(np.mean([r[0] for r in runs]))
    share = float(np.mean([r[1] for r in runs]))
    assert figures.openings_per_day == pytest.approx(openings, rel=0.08), (figures, openings)
    assert figures.open_share == pytest.approx(share, abs=0.02), (figures, share)


def test_a_rule_that_says_yes_to_every_negative_is_open_all_the_time() -> None:
    always = false_alerts(1.0, INTERVAL_S, 2, 3, 60.0)
    assert always.open_share == 1.0 and always.openings_per_day == 0.0
    openings, share = simulated(1.0, 2, 3, 60.0, 2_000, 1)
    assert openings == pytest.approx(DAY_S / (2_000 * INTERVAL_S)) and share == pytest.approx(1.0, abs=0.01)


def test_the_open_share_grows_with_the_false_positive_rate() -> None:
    for n, m, cooldown_s in ((1, 1, 0.0), (2, 3, 60.0), (3, 5, 10.0), (5, 20, 0.0)):
        shares = [false_alerts(q, INTERVAL_S, n, m, cooldown_s).open_share for q in np.linspace(0.001, 1.0, 60)]
        assert all(a <= b + 1e-12 for a, b in itertools.pairwise(shares)), (n, m, cooldown_s)
        assert shares[0] < 0.01 and shares[-1] == 1.0


def test_a_perfect_rule_never_alerts_and_rates_are_checked() -> None:
    assert false_alerts(0.0, INTERVAL_S, 1, 1) == false_alerts(0.0, INTERVAL_S, 3, 5, 60.0)
    assert false_alerts(0.0, INTERVAL_S, 1, 1).openings_per_day == 0.0
    with pytest.raises(ValueError):
        false_alerts(1.5, INTERVAL_S, 1, 1)
    rare = false_alerts(1e-5, INTERVAL_S, 2, 3, 60.0)
    assert 0 < rare.openings_per_day < 0.01 and rare.open_share < 1e-6
