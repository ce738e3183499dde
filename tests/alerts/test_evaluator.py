"""The alert state machine with scripted answer sequences: N-of-M, updates, resolve, cooldown."""

from __future__ import annotations

from typing import Any

from streamwatch.alerts.states import Change, Evaluator, Transition
from streamwatch.rules.model import Rule


def rule(**fields: Any) -> Rule:
    return Rule(**{"id": "fence", "title": "Fence", "question": "Anyone climbing? Answer yes or no.", **fields})


def play(evaluator: Evaluator, r: Rule, answers: str, *, start: float = 0.0, step: float = 2.0) -> str:
    """answers: 'y'/'n' per sample, `step` seconds apart; returns the transitions as 'o', 'u', 'r' or '.'."""
    marks = []
    for index, answer in enumerate(answers):
        change = evaluator.observe("gate", r, answer == "y", start + index * step)
        result = change.transition if change is not None else None
        marks.append({Transition.OPEN: "o", Transition.UPDATE: "u", Transition.RESOLVED: "r", None: "."}[result])
    return "".join(marks)


def test_one_positive_opens_and_one_negative_resolves_without_confirmation() -> None:
    assert play(Evaluator(), rule(cooldown_s=0), "nnynny") == "..or.o"


def test_two_of_three_confirms_and_three_negatives_resolve() -> None:
    r = rule(confirm={"n": 2, "m": 3}, cooldown_s=0)
    assert play(Evaluator(), r, "ynnynyynnn") == ".....o...r"
    assert play(Evaluator(), r, "yny") == "..o"
    assert play(Evaluator(), r, "yyy") == ".o."


def test_isolated_positives_never_open_a_three_of_five_rule() -> None:
    assert play(Evaluator(), rule(confirm={"n": 3, "m": 5}), "ynnynnynnyn") == "..........."


def test_updates_are_rate_limited_while_the_alert_holds() -> None:
    evaluator = Evaluator(update_every_s=10)
    # a sample every 2 s: open at t=0, then updates at t>=10, t>=20 while positive
    assert play(evaluator, rule(), "yyyyyyyyyyy") == "o....u....u"


def test_cooldown_suppresses_a_new_alert_then_allows_it() -> None:
    r = rule(cooldown_s=10)
    evaluator = Evaluator()
    # open t=0, resolve t=2, cooldown until t=12: positives at t=4..10 do not open; t=12 does
    assert play(evaluator, r, "ynyyyyyy") == "or....o."


def test_state_is_kept_per_camera_and_rule() -> None:
    evaluator = Evaluator()
    r1, r2 = rule(), rule(id="gate")
    opened = evaluator.observe("gate", r1, True, 0)
    assert opened is not None and opened.transition == Transition.OPEN
    assert evaluator.observe("yard", r1, False, 0) is None
    assert evaluator.observe("gate", r2, False, 0) is None
    assert evaluator.is_open("gate", "fence") and not evaluator.is_open("yard", "fence")
    assert evaluator.open_alerts() == [("gate", "fence")]
    assert evaluator.close("gate", "fence") == opened.alert_id
    assert not evaluator.is_open("gate", "fence") and evaluator.open_alerts() == []


def test_an_alert_keeps_its_id_from_open_to_resolved() -> None:
    evaluator = Evaluator(update_every_s=0)
    r = rule(confirm={"n": 1, "m": 2})
    changes = [evaluator.observe("gate", r, answer, float(t)) for t, answer in enumerate([True, True, False, False])]
    opened, updated, _, resolved = changes
    assert opened is not None and updated is not None and resolved is not None
    assert [c.transition for c in (opened, updated, resolved)] == [
        Transition.OPEN,
        Transition.UPDATE,
        Transition.RESOLVED,
    ]
    assert opened.alert_id == updated.alert_id == resolved.alert_id and len(opened.alert_id) == 32
    again = evaluator.observe("gate", r.model_copy(update={"cooldown_s": 0}), True, 100.0)
    assert again is not None and again.alert_id != opened.alert_id  # a new incident, a new id


def test_a_restored_alert_continues_and_resolves_through_the_normal_confirmation() -> None:
    r = rule(confirm={"n": 2, "m": 3}, cooldown_s=30)
    before = Evaluator(update_every_s=10)
    assert play(before, r, "yy") == ".o"
    saved = before.saved("gate", "fence")
    assert saved.open and saved.alert_id is not None and saved.opened_at == 2.0
    after = Evaluator(update_every_s=10)  # a new process
    after.restore(saved)
    assert after.is_open("gate", "fence") and after.state("gate", "fence").alert_id == saved.alert_id
    # still positive: an update of the same alert (not a new one), then three negatives resolve it
    changes = [after.observe("gate", r, answer == "y", 12.0 + 2 * index) for index, answer in enumerate("ynnn")]
    assert [c.transition if c else None for c in changes] == [Transition.UPDATE, None, None, Transition.RESOLVED]
    assert {c.alert_id for c in changes if c} == {saved.alert_id}
    cooling = after.saved("gate", "fence")
    assert not cooling.open and cooling.cooldown_until == 18.0 + 30
    again = Evaluator()
    again.restore(cooling)  # the cooldown survives a restart too
    assert play(again, r, "yyyy", start=20.0, step=10.0) == "...o"  # t=20,30,40 cooling; t=50 opens


def changes(evaluator: Evaluator, r: Rule, answers: list[tuple[float, bool, str | None]]) -> list[Change | None]:
    """(time, positive, value) per sample -> the Change each one caused (None when none)."""
    return [evaluator.observe("gate", r, positive, at, value) for at, positive, value in answers]


def test_for_s_opens_only_once_the_condition_held_that_long_and_says_how_long() -> None:
    r = rule(for_s=300, cooldown_s=0)
    evaluator = Evaluator()
    # a sample a minute: yes from t=60; one "no" at t=240 breaks the hold; yes again from t=300
    answers: list[tuple[float, bool, str | None]] = [(60.0 * i, i not in (0, 4), None) for i in range(11)]
    result = changes(evaluator, r, answers)
    opened = [(at, c) for (at, _, _), c in zip(answers, result, strict=True) if c is not None]
    assert len(opened) == 1
    at, change = opened[0]
    assert at == 600.0 and change.transition is Transition.OPEN and change.held_s == 300.0
    assert play(Evaluator(), rule(for_s=0), "y") == "o"  # without for_s: at once, as before


def test_for_s_counts_from_when_the_confirmation_was_first_met() -> None:
    r = rule(for_s=10, confirm={"n": 2, "m": 3}, cooldown_s=0)
    # every 2 s: y n y y y y y y -> met from t=4 (2 of 3), held 10 s at t=14
    assert play(Evaluator(), r, "ynyyyyyyy") == ".......o."


def test_rising_needs_the_condition_to_have_been_false_first() -> None:
    r = rule(on="rising", cooldown_s=0)
    assert play(Evaluator(), r, "yyyny") == "....o"  # already true when watching started: no alert until it fell
    assert play(Evaluator(), rule(cooldown_s=0), "yyyny") == "o..ro"  # the plain condition alerts at once


def test_a_count_change_alerts_with_the_previous_answer() -> None:
    r = Rule.model_validate(
        {
            "id": "people",
            "title": "People",
            "question": "How many people?",
            "answer": "count",
            "on": "change",
            "min_delta": 2,
            "cooldown_s": 0,
        }
    )
    evaluator = Evaluator()
    values = ["1", "2", "1", "4", "4", "4", "5", "7"]
    result = changes(evaluator, r, [(float(i), False, v) for i, v in enumerate(values)])
    marks = "".join("." if c is None else c.transition.value[0] for c in result)
    assert marks == "...or..o"  # 1->2->1 stay within min_delta; 1->4 opens, 4 again resolves; 5 is within; 4->7
    opened = result[3]
    assert opened is not None and opened.previous == "1"
    assert r.value_of("There are 4 people.") == "4" and r.value_of("none") is None


def test_a_choice_change_alerts_once_per_change() -> None:
    r = Rule.model_validate(
        {
            "id": "fill",
            "title": "Fill",
            "question": "How full?",
            "answer": "choice",
            "choices": ["empty", "partial", "full"],
            "on": "change",
            "cooldown_s": 0,
            "confirm": {"n": 2, "m": 2},
        }
    )
    evaluator = Evaluator()
    values = [r.value_of(t) for t in ["Full.", "full", "partial", "full", "partial", "partial", "partial", "partial"]]
    result = changes(evaluator, r, [(float(i), False, v) for i, v in enumerate(values)])
    marks = "".join("." if c is None else c.transition.value[0] for c in result)
    assert marks == ".....o.r"  # a one-sample flicker to partial is not confirmed; two in a row are
    assert result[5] is not None and result[5].previous == "full"
