"""The release gate's judgement (release/gate.py) on scored examples: a rule too thin to judge is
refused with what to label, any rule worse beyond a tolerance is refused, an equal or better change
passes; false alerts a day and the open share count as the alert state machine would."""

from __future__ import annotations

import random

import pytest

from streamwatch.config.release import ReleaseConfig
from streamwatch.learning.evaluation.replay import Scored
from streamwatch.learning.release.gate import GateReport, judge, markdown
from streamwatch.rules.model import Rule

CONFIG = ReleaseConfig()


def rule(rule_id: str, threshold: float = 0.5, **extra: object) -> Rule:
    return Rule.model_validate({"id": rule_id, "title": rule_id, "question": "q?", "threshold": threshold} | extra)


def scored(r: Rule, pairs: list[tuple[float, bool]], camera: str = "line", interval: float = 2.0) -> Scored:
    return Scored(camera, r, interval, [p for p, _ in pairs], [t for _, t in pairs])


def separated(yes: int, no: int, rng: random.Random) -> list[tuple[float, bool]]:
    return [(rng.uniform(0.8, 1.0), True) for _ in range(yes)] + [(rng.uniform(0.0, 0.2), False) for _ in range(no)]


def run(
    rules: list[Rule],
    before: dict[str, list[tuple[float, bool]]],
    after: dict[str, list[tuple[float, bool]]],
    thresholds: dict[str, float] | None = None,
    config: ReleaseConfig = CONFIG,
) -> GateReport:
    by_id = {r.id: r for r in rules}
    old = {("line", k): scored(by_id[k], v) for k, v in before.items()}
    new = {("line", k): scored(by_id[k], v) for k, v in after.items()}
    return judge(rules, old, new, thresholds or {}, config)


def test_an_unchanged_or_better_answer_set_passes() -> None:
    rng = random.Random(0)
    a, b = rule("a"), rule("b")
    data = {"a": separated(10, 10, rng), "b": separated(6, 8, rng)}
    report = run([a, b], data, data)
    assert report.passed and report.refusals() == []
    worse_before = {"a": [*data["a"][:-1], (0.9, False)], "b": data["b"]}  # before: one false positive
    assert run([a, b], worse_before, data).passed  # the change removes it


@pytest.mark.parametrize(
    ("yes", "no", "says"),
    [
        (0, 0, "cannot be judged: no labelled example"),
        (3, 9, "label 2 more truly-yes"),
        (9, 4, "label 1 more truly-no"),
        (2, 1, "label 3 more truly-yes and 4 more truly-no"),
    ],
)
def test_a_rule_with_too_few_examples_of_an_answer_is_refused_with_what_to_label(yes: int, no: int, says: str) -> None:
    """The fine-tune that broke foreign-object: its only examples were four 'no' answers."""
    rng = random.Random(1)
    a, thin = rule("a"), rule("thin")
    data = {"a": separated(10, 10, rng)}
    if yes or no:
        data["thin"] = separated(yes, no, rng)
    report = run([a, thin], data, data)
    assert not report.passed
    assert [v.rule for v in report.verdicts if not v.passed] == ["thin"]
    assert says in report.refusals()[0] and report.refusals()[0].startswith("thin: ")


def test_precision_recall_and_false_alerts_worse_beyond_the_tolerance_are_refused() -> None:
    rng = random.Random(2)
    a = rule("a", confirm={"n": 1, "m": 1}, cooldown_s=0)
    base = separated(20, 200, rng)
    missed = [(0.1, t) if t and i < 2 else (p, t) for i, (p, t) in enumerate(base)]  # two yeses lost
    report = run([a], {"a": base}, {"a": missed})
    assert not report.passed and "recall 1.000 -> 0.900" in report.refusals()[0]
    noisy = [(0.9, t) if not t and i % 50 == 0 else (p, t) for i, (p, t) in enumerate(base)]  # 4 of 200 false
    report = run([a], {"a": base}, {"a": noisy})
    problems = " | ".join(report.refusals())
    assert "precision 1.000 -> 0.833" in problems and "false-positive rate 0 -> 0.02" in problems
    assert "false alerts opened a day 0 ->" in problems and "false alert is open 0 ->" in problems
    one = [(0.9, False) if i == 25 else (p, t) for i, (p, t) in enumerate(base)]  # 1 of 200: 0.5 points
    loose = ReleaseConfig(max_precision_drop=0.1, max_false_alert_rise=0.01, max_false_alerts_per_day_rise=1e5)
    assert run([a], {"a": base}, {"a": one}, config=loose).passed  # within every tolerance given


def test_a_threshold_change_is_judged_at_the_new_threshold_on_the_same_answers() -> None:
    a = rule("a", threshold=0.5)
    data = {"a": [(0.6, True)] * 10 + [(0.3, False)] * 10 + [(0.45, False)] * 5}
    assert run([a], data, data, {"a": 0.55}).passed  # nothing moves across 0.55
    lowered = run([a], data, data, {"a": 0.4})  # five false yeses more
    assert not lowered.passed and "precision 1.000 -> 0.667" in lowered.refusals()[0]
    raised = run([a], data, data, {"a": 0.65})  # every yes missed
    assert not raised.passed and "recall 1.000 -> 0.000" in raised.refusals()[0]
    text = markdown(raised)
    assert "| a | 10 | 15 | 0.5 -> 0.65 |" in text and "refused" in text


def test_a_rule_that_opens_on_every_negative_cannot_hide_behind_few_openings() -> None:
    """Before: no false positive. After: yes on every negative: one opening that never closes, so the
    openings a day fall to 0 but the open share rises to 1: refused."""
    a = rule("a", confirm={"n": 1, "m": 1})
    data = {"a": [(0.9, True)] * 10 + [(0.1, False)] * 10}
    always = {"a": [(0.9, True)] * 10 + [(0.9, False)] * 10}
    report = run([a], data, always)
    assert not report.passed
    assert any("false alert is open 0 -> 1" in line for line in report.refusals())


@pytest.mark.parametrize(
    ("yes", "no", "coarse"), [(6, 8, ("false-positive", "recall")), (60, 12, ("false-positive",)), (60, 250, ())]
)
def test_a_pass_on_few_examples_says_what_they_cannot_show(yes: int, no: int, coarse: tuple[str, ...]) -> None:
    rng = random.Random(1)
    a = rule("a")
    data = {"a": separated(yes, no, rng)}
    report = run([a], data, data)
    (verdict,) = report.verdicts
    assert report.passed and len(verdict.coarse) == len(coarse)
    for word, line in zip(coarse, verdict.coarse, strict=True):
        assert word in line and "cannot be seen" in line
    if "false-positive" in coarse:
        assert f"one more false positive moves the false-positive rate by {1 / no:.3g}" in verdict.coarse[0]
        assert "about 200 truly-no examples" in verdict.coarse[0]  # 1 / the 0.005 tolerance
    text = markdown(report)
    assert ("What so few examples cannot show" in text) == bool(coarse)
    assert ("ok, coarse (below)" in text) == bool(coarse)


def test_a_rule_worse_on_one_camera_is_refused_even_when_better_over_all_its_cameras() -> None:
    rng = random.Random(5)
    a = rule("a", confirm={"n": 1, "m": 1}, cooldown_s=0)
    gate_before, dock_before = separated(20, 100, rng), separated(20, 100, rng)
    dock_noisy = [(0.9, False) if not t and i % 10 == 0 else (p, t) for i, (p, t) in enumerate(separated(20, 100, rng))]
    gate_worse = [(0.9, False) if not t and i % 25 == 0 else (p, t) for i, (p, t) in enumerate(gate_before)]
    old = {("gate", "a"): scored(a, gate_before, "gate"), ("dock", "a"): scored(a, dock_noisy, "dock")}
    new = {("gate", "a"): scored(a, gate_worse, "gate"), ("dock", "a"): scored(a, dock_before, "dock")}
    loose = ReleaseConfig(max_precision_drop=0.1, max_false_alert_rise=0.01, max_false_alerts_per_day_rise=1e5)
    report = judge([a], old, new, {}, loose)
    problems = report.refusals()
    assert not report.passed and problems and all(p.startswith("a: on camera gate: ") for p in problems), problems
    assert any("false-positive rate 0 -> 0.04" in p for p in problems)  # 4 of 100 on the gate; the dock got better
    # a camera with too few examples of its own is judged only within the pooled figures
    thin = {
        ("gate", "a"): scored(a, gate_worse[:3] + gate_worse[-3:], "gate"),
        **{k: v for k, v in new.items() if k[0] == "dock"},
    }
    thin_old = {
        ("gate", "a"): scored(a, gate_before[:3] + gate_before[-3:], "gate"),
        **{k: v for k, v in old.items() if k[0] == "dock"},
    }
    assert not any("on camera" in p for p in judge([a], thin_old, thin, {}, loose).refusals())
