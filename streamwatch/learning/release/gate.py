"""The release gate's judgement: every judged rule's labelled examples scored before and after a change
(another adapter, other thresholds), compared rule by rule. A rule blocks the change when

- it has fewer than `min_examples` truly-yes or truly-no examples (it cannot be judged: the verdict
  says how many more of which answer to label), or its examples cannot be replayed at all;
- its precision or recall falls by more than the tolerance;
- its false-positive rate, the share of the time a false alert is open, or the false alerts opened a
  day rise by more than the tolerance (evaluation/false_alerts, at the rule's own N-of-M, cooldown and
  its most frequent camera's interval);
- any one camera with enough examples of its own (`min_examples` of each answer) is worse beyond a
  tolerance: a rule that got better on one camera cannot hide getting worse on another.

Pure figures: replaying the examples through a model is the caller's (release/check.py)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from streamwatch.config.release import ReleaseConfig
from streamwatch.learning.evaluation import scores as metrics
from streamwatch.learning.evaluation.false_alerts import false_alerts
from streamwatch.learning.evaluation.replay import Scored
from streamwatch.reports import markdown_table
from streamwatch.rules.model import Rule


@dataclass(frozen=True)
class Figures:
    threshold: float
    precision: float | None
    recall: float | None
    false_positive_rate: float | None
    false_alerts_per_day: float | None
    false_alert_open_share: float | None


@dataclass(frozen=True)
class RuleVerdict:
    rule: str
    yes: int
    no: int
    before: Figures | None
    after: Figures | None
    problems: tuple[str, ...] = ()
    coarse: tuple[str, ...] = ()  # changes smaller than the tolerance that these few examples cannot show

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class GateReport:
    verdicts: tuple[RuleVerdict, ...]
    change: tuple[str, ...] = ()  # what the change is, a line each
    notes: tuple[str, ...] = field(default=())  # examples left out and why

    @property
    def passed(self) -> bool:
        return all(verdict.passed for verdict in self.verdicts)

    def refusals(self) -> list[str]:
        return [f"{v.rule}: {problem}" for v in self.verdicts for problem in v.problems]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "change": list(self.change),
            "rules": [asdict(v) | {"passed": v.passed} for v in self.verdicts],
            "refusals": self.refusals(),
            "notes": list(self.notes),
        }


@dataclass
class _Pooled:
    """One rule's answers over all its cameras."""

    rule: Rule
    p_yes: list[float] = field(default_factory=list)
    truth: list[bool] = field(default_factory=list)
    intervals: dict[float, int] = field(default_factory=dict)  # sample interval -> examples at it

    @property
    def interval_s(self) -> float:
        return max(self.intervals, key=lambda s: (self.intervals[s], -s)) if self.intervals else 1.0


def pool(scored: Mapping[tuple[str, str], Scored]) -> dict[str, _Pooled]:
    pooled: dict[str, _Pooled] = {}
    for item in scored.values():
        target = pooled.setdefault(item.rule.id, _Pooled(item.rule))
        target.p_yes += item.p_yes
        target.truth += item.truth
        target.intervals[item.sample_interval_s] = target.intervals.get(item.sample_interval_s, 0) + len(item.p_yes)
    return pooled


def figures(rule: Rule, p_yes: Sequence[float], truth: Sequence[bool], threshold: float, interval_s: float) -> Figures:
    counted = metrics.counts(p_yes, truth, threshold)
    rate = counted.false_positive_rate
    found = None if rate is None else false_alerts(rate, interval_s, rule.confirm.n, rule.confirm.m, rule.cooldown_s)
    return Figures(
        threshold,
        counted.precision,
        counted.recall,
        rate,
        None if found is None else found.openings_per_day,
        None if found is None else found.open_share,
    )


def judge(
    judged: Iterable[Rule],
    before: Mapping[tuple[str, str], Scored],
    after: Mapping[tuple[str, str], Scored],
    thresholds: Mapping[str, float],
    config: ReleaseConfig,
    why_not_replayed: Mapping[str, str] | None = None,
    change: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> GateReport:
    """`before`/`after`: the examples scored by the live model and by the candidate (the same examples;
    `after` may be `before` when only thresholds change); `thresholds`: the candidate's, for the rules it
    changes (the others keep their own); `why_not_replayed`: rule id -> why its examples were left out."""
    old, new = pool(before), pool(after)
    verdicts = []
    for rule in sorted(judged, key=lambda r: r.id):
        verdict = _verdict(rule, old.get(rule.id), new.get(rule.id), thresholds, config, why_not_replayed or {})
        if verdict.before is not None:
            cameras = _per_camera(rule, before, after, thresholds, config)
            verdict = replace(verdict, problems=verdict.problems + tuple(cameras))
        verdicts.append(verdict)
    return GateReport(tuple(verdicts), tuple(change), tuple(notes))


def _per_camera(
    rule: Rule,
    before: Mapping[tuple[str, str], Scored],
    after: Mapping[tuple[str, str], Scored],
    thresholds: Mapping[str, float],
    config: ReleaseConfig,
) -> list[str]:
    """Each camera of a rule seen on more than one camera, judged on its own examples where it has
    `min_examples` of each answer."""
    mine = sorted(camera for camera, rule_id in before if rule_id == rule.id and (camera, rule_id) in after)
    if len(mine) < 2:
        return []  # the rule's verdict is this camera's
    was, now = _thresholds(rule, thresholds)
    found = []
    for camera in mine:
        old, new = before[(camera, rule.id)], after[(camera, rule.id)]
        yes = sum(old.truth)
        if min(yes, len(old.truth) - yes) < config.min_examples:
            continue  # too few to judge alone: the pooled verdict covers it
        first = figures(rule, old.p_yes, old.truth, was, old.sample_interval_s)
        second = figures(rule, new.p_yes, new.truth, now, new.sample_interval_s)
        found += [f"on camera {camera}: {problem}" for problem in _worse(first, second, config)]
    return found


def _verdict(
    rule: Rule,
    old: _Pooled | None,
    new: _Pooled | None,
    thresholds: Mapping[str, float],
    config: ReleaseConfig,
    why_not: Mapping[str, str],
) -> RuleVerdict:
    if old is None or new is None:
        why = why_not.get(rule.id, "no labelled example")
        needed = f"label at least {config.min_examples} truly-yes and {config.min_examples} truly-no frames"
        return RuleVerdict(rule.id, 0, 0, None, None, (f"cannot be judged: {why}; {needed}",))
    yes = sum(old.truth)
    no = len(old.truth) - yes
    was, now = _thresholds(rule, thresholds)
    first = figures(rule, old.p_yes, old.truth, was, old.interval_s)
    second = figures(rule, new.p_yes, new.truth, now, new.interval_s)
    problems = []
    least = config.min_examples
    short = [f"{least - n} more truly-{word}" for n, word in ((yes, "yes"), (no, "no")) if n < least]
    if short:
        problems.append(f"too few examples to judge ({yes} yes, {no} no): label {' and '.join(short)}")
    problems += _worse(first, second, config)
    return RuleVerdict(rule.id, yes, no, first, second, tuple(problems), _coarse(yes, no, config))


def _thresholds(rule: Rule, thresholds: Mapping[str, float]) -> tuple[float, float]:
    """The rule's threshold before and after the change (count and choice answers score 1.0 or 0.0)."""
    if rule.answer != "yes_no":
        return 0.5, 0.5
    return rule.threshold, thresholds.get(rule.id, rule.threshold)


def _coarse(yes: int, no: int, config: ReleaseConfig) -> tuple[str, ...]:
    """What a pass on `yes` + `no` examples cannot promise: one example more or less moves a rate by
    1/n, so a change below that (and below the tolerance) is invisible; said with the examples needed."""
    found = []
    rise = config.max_false_alert_rise
    if no and 1 / no > rise:
        found.append(
            f"{no} truly-no examples: one more false positive moves the false-positive rate by {1 / no:.3g}, "
            f"so a rise within the tolerance ({rise:g}) cannot be seen: passing means no new false positive "
            f"on these examples; about {math.ceil(1 / rise)} truly-no examples resolve the tolerance"
        )
    drop = config.max_recall_drop
    if yes and 1 / yes > drop:
        found.append(
            f"{yes} truly-yes examples: one more miss moves recall by {1 / yes:.3g}, so a drop within the "
            f"tolerance ({drop:g}) cannot be seen: passing means no new miss on these examples; about "
            f"{math.ceil(1 / drop)} truly-yes examples resolve the tolerance"
        )
    return tuple(found)


def _worse(old: Figures, new: Figures, config: ReleaseConfig) -> list[str]:
    found = []
    drops = (("precision", config.max_precision_drop), ("recall", config.max_recall_drop))
    for name, tolerance in drops:
        was, now = getattr(old, name), getattr(new, name)  # no yes at all after: recall says it
        if was is not None and now is not None and now < was - tolerance - 1e-12:
            found.append(f"{name} {was:.3f} -> {now:.3f} (at most {tolerance:g} lower)")
    rises = (
        ("false_positive_rate", "false-positive rate", config.max_false_alert_rise),
        ("false_alert_open_share", "share of the time a false alert is open", config.max_false_alert_rise),
        ("false_alerts_per_day", "false alerts opened a day", config.max_false_alerts_per_day_rise),
    )
    for name, words, tolerance in rises:
        was, now = getattr(old, name), getattr(new, name)
        if was is not None and now is not None and now > was + tolerance + 1e-12:
            found.append(f"{words} {was:.4g} -> {now:.4g} (at most {tolerance:g} higher)")
    return found


COLUMNS = [
    ("rule", "rule"),
    ("yes", "truly yes"),
    ("no", "truly no"),
    ("threshold", "threshold"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("fpr", "false-positive rate"),
    ("per_day", "false alerts/day"),
    ("open", "false alert open"),
    ("verdict", "verdict"),
]


def markdown(report: GateReport) -> str:
    def pair(verdict: RuleVerdict, name: str, digits: str) -> str:
        values = [None if f is None else getattr(f, name) for f in (verdict.before, verdict.after)]
        return " -> ".join("-" if v is None else format(v, digits) for v in values)

    rows = [
        {
            "rule": v.rule,
            "yes": v.yes,
            "no": v.no,
            "threshold": pair(v, "threshold", ".4g"),
            "precision": pair(v, "precision", ".3f"),
            "recall": pair(v, "recall", ".3f"),
            "fpr": pair(v, "false_positive_rate", ".4f"),
            "per_day": pair(v, "false_alerts_per_day", ".3g"),
            "open": pair(v, "false_alert_open_share", ".4f"),
            "verdict": ("ok, coarse (below)" if v.coarse else "ok") if v.passed else "; ".join(v.problems),
        }
        for v in report.verdicts
    ]
    head = "passed: every judged rule is as good or better" if report.passed else "refused"
    coarse = [v for v in report.verdicts if v.passed and v.coarse]
    return "\n".join(
        [
            "# Release gate",
            "",
            *[f"- {line}" for line in report.change],
            "",
            f"**{head}.** Each rule's labelled examples, before -> after the change.",
            "",
            markdown_table(rows, COLUMNS),
            *(
                ["", "What so few examples cannot show:", *[f"- {v.rule}: {c}" for v in coarse for c in v.coarse]]
                if coarse
                else []
            ),
            *(["", "Left out:", *[f"- {note}" for note in report.notes]] if report.notes else []),
            "",
        ]
    )
