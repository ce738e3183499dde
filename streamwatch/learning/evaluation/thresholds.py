"""A threshold suggested for a yes/no rule from its labelled examples, one that holds on answers not
seen yet rather than on these alone:

- **enough of each answer**: nothing is suggested with fewer than `MIN_EACH` truly-yes or truly-no
  examples (the suggestion says how many more of which answer are needed);
- **a margin**: scores are compared as log-odds (P(yes) 0.0003 and 0.0005 are close, 0.3 and 0.5 far);
  a threshold is judged by its *worst* F1 (or precision) anywhere within `MARGIN` of it, so it never
  sits in a narrow gap between one yes and one no: moving the answers a little must not change it;
- **how sure**: the same rule run in stratified cross-validation (chosen on k-1 folds, counted on the
  one left out): the pooled precision and recall it reaches there, and the spread of the folds'
  thresholds.

Where the current threshold is among the best it is kept; else the middle of the best stretch nearest
to it, rounded to three significant figures where that stays inside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_EACH = 5  # truly-yes and truly-no examples a suggestion needs, each
MARGIN = 1.0  # log-odds a threshold keeps: e^1 = 2.7 times the odds on either side
FOLDS = 5
_EPS = 1e-9
_CLAMP = 1e-12  # P(yes) of exactly 0 or 1 as log-odds of about -+27.6


@dataclass(frozen=True)
class Suggestion:
    threshold: float | None
    why: str  # one line: why none, or how sure the suggestion is
    cv_precision: float | None = None  # pooled over the folds, each threshold chosen without its fold
    cv_recall: float | None = None
    fold_range: tuple[float, float] | None = None  # lowest and highest of the folds' thresholds


def logit(p: float) -> float:
    p = min(max(p, _CLAMP), 1 - _CLAMP)
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def suggest(
    p_yes: Sequence[float],
    truth: Sequence[bool],
    current: float,
    target_precision: float | None = None,
    *,
    min_each: int = MIN_EACH,
    margin: float = MARGIN,
    folds: int = FOLDS,
) -> Suggestion:
    """The threshold for these examples (see the module's note), or None and why."""
    yes = sum(truth)
    no = len(truth) - yes
    if yes < min_each or no < min_each:
        needed = [f"{min_each - n} more truly-{word}" for n, word in ((yes, "yes"), (no, "no")) if n < min_each]
        return Suggestion(None, f"{yes} yes and {no} no examples: label {' and '.join(needed)} to suggest one")
    chosen = _choose(p_yes, truth, current, target_precision, margin)
    if chosen is None:
        return Suggestion(None, f"no threshold keeps precision {target_precision:g} within the margin")
    tp = fp = fn = 0
    found: list[float] = []
    k = max(2, min(folds, yes, no))
    for part in _folds(p_yes, truth, k):
        rest = [i for i in range(len(p_yes)) if i not in part]
        inner = _choose([p_yes[i] for i in rest], [truth[i] for i in rest], current, target_precision, margin)
        if inner is None:  # this fold's rest reaches no threshold: every answer of the fold counts as a no
            fn += sum(truth[i] for i in part)
            continue
        found.append(inner)
        for i in part:
            said = p_yes[i] >= inner
            tp, fp, fn = tp + (said and truth[i]), fp + (said and not truth[i]), fn + (not said and truth[i])
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    spread = (min(found), max(found)) if found else None
    shown = "-" if precision is None else f"{precision:.3f}"
    why = f"cross-validated over {k} folds: precision {shown}, recall {0.0 if recall is None else recall:.3f}" + (
        f"; the folds chose {_g(spread[0])}..{_g(spread[1])}" if spread else ""
    )
    return Suggestion(chosen, why, precision, recall, spread)


def _g(value: float) -> str:
    return f"{value:.3g}"


def _folds(p_yes: Sequence[float], truth: Sequence[bool], k: int) -> list[set[int]]:
    """k folds, each with its share of yes and of no examples spread over the score range (deterministic:
    within each answer, by score, every k-th one)."""
    parts: list[set[int]] = [set() for _ in range(k)]
    for answer in (True, False):
        members = sorted((i for i, t in enumerate(truth) if t == answer), key=lambda i: (p_yes[i], i))
        for rank, i in enumerate(members):
            parts[rank % k].add(i)
    return parts


def _choose(
    p_yes: Sequence[float], truth: Sequence[bool], current: float, target_precision: float | None, margin: float
) -> float | None:
    """The threshold whose worst figure within `margin` (log-odds) is best (see the module's note)."""
    if not any(truth) or all(truth):
        return None
    z = np.array([logit(p) for p in p_yes])
    positive = np.array(truth, dtype=bool)
    scores = np.unique(z)  # sorted; a threshold t says yes to z >= t
    pos_sorted, neg_sorted = np.sort(z[positive]), np.sort(z[~positive])
    total_pos = len(pos_sorted)

    def figure(at: np.ndarray) -> np.ndarray:
        tp = total_pos - np.searchsorted(pos_sorted, at, side="left")
        fp = len(neg_sorted) - np.searchsorted(neg_sorted, at, side="left")
        if target_precision is None:
            return np.asarray(2 * tp / np.maximum(tp + fp + total_pos, 1), dtype=float)  # F1 = 2tp/(2tp+fp+fn)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
        return np.asarray(precision, dtype=float)

    at_scores = figure(scores)
    edges = np.unique(np.concatenate([scores - margin, scores + margin, [logit(current)]]))
    candidates = np.unique(np.concatenate([edges, (edges[:-1] + edges[1:]) / 2]))
    worst = np.minimum(figure(candidates - margin), figure(candidates + margin))
    low = np.searchsorted(scores, candidates - margin, side="right")  # scores in (t - margin, t + margin]
    high = np.searchsorted(scores, candidates + margin, side="right")
    for index in np.nonzero(high > low)[0]:
        worst[index] = min(worst[index], float(at_scores[low[index] : high[index]].min()))
    if target_precision is not None:
        says_yes = np.searchsorted(pos_sorted, candidates, side="left") < total_pos  # catches a truly-yes one
        meets = np.nonzero((worst >= target_precision - _EPS) & says_yes)[0]
        if len(meets) == 0:
            return None
        # the most recall: the lowest threshold that keeps the precision (and says yes to something)
        return _nice(float(candidates[meets[0]]), candidates, (worst >= target_precision - _EPS) & says_yes)
    best = worst >= worst.max() - _EPS
    here = logit(current)
    spot = int(np.argmin(np.where(best, np.abs(candidates - here), np.inf)))
    return _nice(float(candidates[spot]), candidates, best, keep=here)


def _nice(z: float, candidates: np.ndarray, good: np.ndarray, keep: float | None = None) -> float:
    """`z` (or `keep` where it is as good) as P(yes): the middle of the good stretch around it, rounded
    to three significant figures where that stays inside the stretch."""
    index = int(np.searchsorted(candidates, z))
    if keep is not None and abs(candidates[index] - keep) < _EPS:
        return sigmoid(keep)
    start = end = index
    while start > 0 and good[start - 1]:
        start -= 1
    while end < len(candidates) - 1 and good[end + 1]:
        end += 1
    low, high = float(candidates[start]), float(candidates[end])
    middle = low if keep is None else (low + high) / 2  # a precision target: as low as the margin lets it
    exact = sigmoid(middle)
    rounded = float(f"{exact:.3g}")
    return rounded if 0 < rounded < 1 and low - _EPS <= logit(rounded) <= high + _EPS else exact
