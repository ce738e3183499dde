"""How well a yes/no rule does on labelled examples: counts at a threshold, precision, recall, F1,
expected calibration error (the suggested threshold: thresholds.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

CALIBRATION_BINS = 10


class Bin(NamedTuple):
    low: float
    high: float
    answers: int
    mean_p_yes: float
    yes: float  # the share of those answers that were truly yes


@dataclass(frozen=True)
class Counts:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def false_positive_rate(self) -> float | None:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else None


def counts(p_yes: Sequence[float], truth: Sequence[bool], threshold: float) -> Counts:
    """The rule alerts on an answer when P(yes) >= threshold (as the service decides)."""
    said = [p >= threshold for p in p_yes]
    return Counts(
        tp=sum(s and t for s, t in zip(said, truth, strict=True)),
        fp=sum(s and not t for s, t in zip(said, truth, strict=True)),
        fn=sum(not s and t for s, t in zip(said, truth, strict=True)),
        tn=sum(not s and not t for s, t in zip(said, truth, strict=True)),
    )


def reliability(p_yes: Sequence[float], truth: Sequence[bool], bins: int = CALIBRATION_BINS) -> list[Bin]:
    """Per equal-width P(yes) bin that holds answers (the last one includes 1.0): its answers, their mean
    P(yes) and how often the truth was yes."""
    rows = []
    for index in range(bins):
        low, high = index / bins, (index + 1) / bins
        members = [
            (p, t) for p, t in zip(p_yes, truth, strict=True) if low <= p < high or (index == bins - 1 and p == 1.0)
        ]
        if members:
            mean = sum(p for p, _ in members) / len(members)
            rows.append(Bin(low, high, len(members), mean, sum(t for _, t in members) / len(members)))
    return rows


def calibration_error(p_yes: Sequence[float], truth: Sequence[bool], bins: int = CALIBRATION_BINS) -> float | None:
    """Expected calibration error: over the reliability bins, the answers' share times the gap between
    the bin's mean P(yes) and how often the truth was yes."""
    if not p_yes:
        return None
    return sum(b.answers * abs(b.mean_p_yes - b.yes) for b in reliability(p_yes, truth, bins)) / len(p_yes)
