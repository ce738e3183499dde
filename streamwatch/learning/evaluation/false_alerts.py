"""What a rule's false positives cost on a camera where its condition is never true: false alerts
opened a day, and the share of the time a false alert is open. Both come from the alert state machine
itself (rules/evaluator: open on `n` of the last `m`, resolve after `m` negatives in a row, then
`cooldown_s` without opening), fed answers that are positive with the false-positive rate `q`, each
independent of the others:

- a cycle is a closed part (the cooldown, then until `n` of the last `m` are positive again) and an
  open part (until `m` negatives in a row: (1 - p^m) / (q p^m) samples, p = 1 - q);
- openings a day = samples a day / samples a cycle; the open share = open part / cycle.

A rule that says yes to every negative opens once and never closes: it opens almost nothing a day, and
its open share is 1, which is why both figures are reported. The open share grows with `q`; openings
grow with `q` until alerts stop closing. The closed part is exact (a Markov chain over the confirmation
window) for `m` up to `EXACT_M`; past that it is approximated by the chance that a sample completes
`n` of `m`. `for_s` and `on = "rising"` are left out: both only make alerts fewer, so the figures never
flatter. Checked against the evaluator driven by random answers (tests/alerts/test_false_alerts.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EXACT_M = 8
DAY_S = 86_400.0


@dataclass(frozen=True)
class FalseAlerts:
    openings_per_day: float
    open_share: float  # of the time, 0..1


def false_alerts(q: float, sample_interval_s: float, n: int, m: int, cooldown_s: float = 0.0) -> FalseAlerts:
    """The figures for a false-positive rate `q` (0..1) at one answer every `sample_interval_s`."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a false-positive rate is between 0 and 1, not {q}")
    if q == 0.0:
        return FalseAlerts(0.0, 0.0)
    p = 1.0 - q
    open_part = math.inf if p == 0.0 else (1.0 - p**m) / (q * p**m)
    closed_part = _closed_samples(q, n, m, _blocked(cooldown_s, sample_interval_s))
    cycle = closed_part + open_part
    if math.isinf(open_part):
        return FalseAlerts(0.0, 1.0)
    return FalseAlerts(DAY_S / sample_interval_s / cycle, open_part / cycle)


def _blocked(cooldown_s: float, interval_s: float) -> int:
    """Samples after a resolve that may not open: the k-th comes k intervals later and opens only at or
    after the cooldown's end."""
    return max(1, math.ceil(cooldown_s / interval_s - 1e-9)) - 1


def _closed_samples(q: float, n: int, m: int, blocked: int) -> float:
    """Expected samples from a resolve (the window emptied) to the next opening."""
    if m > EXACT_M:
        completes = q * math.comb(m - 1, n - 1) * q ** (n - 1) * (1 - q) ** (m - n)
        return blocked + (math.inf if completes == 0 else 1.0 / completes)
    states = [(length, bits) for length in range(m + 1) for bits in range(2**length)]
    index = {state: number for number, state in enumerate(states)}

    def step(state: tuple[int, int], positive: bool) -> tuple[int, int]:
        length, bits = state
        bits = (bits << 1) | positive
        if length == m:
            bits &= (1 << m) - 1
        return min(length + 1, m), bits

    def met(state: tuple[int, int]) -> bool:
        return bin(state[1]).count("1") >= n

    # where the window stands when opening becomes possible: `blocked` samples after the resolve
    where = np.zeros(len(states))
    where[index[(0, 0)]] = 1.0
    for _sample in range(min(blocked, m)):  # the window holds the last m answers: after m it is as after more
        moved = np.zeros(len(states))
        for number, share in enumerate(where):
            if share:
                moved[index[step(states[number], True)]] += share * q
                moved[index[step(states[number], False)]] += share * (1 - q)
        where = moved
    # expected samples until an answer makes `n` of the last `m` positive: h = 1 + P h over the unmet
    size = len(states)
    system = np.eye(size)
    for number, state in enumerate(states):
        for positive, likelihood in ((True, q), (False, 1.0 - q)):
            after = step(state, positive)
            if not met(after):
                system[number, index[after]] -= likelihood
    hitting = np.linalg.solve(system, np.ones(size))
    return blocked + float(where @ hitting)
