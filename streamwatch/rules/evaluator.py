"""Alert state per (camera, rule): confirm with N-of-M, rate-limit updates, resolve, cool down."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from streamwatch.rules.model import Rule

UPDATE_EVERY_S = 60.0  # while an alert holds, at most one `update` event per this many seconds


class Transition(StrEnum):
    OPEN = "open"
    UPDATE = "update"
    RESOLVED = "resolved"


@dataclass
class AlertState:
    """What the evaluator remembers about one rule on one camera."""

    window: deque[bool] = field(default_factory=deque)  # the last m answers, newest last
    open: bool = False
    alert_id: str | None = None  # the event id of the `open` event while open
    opened_at: float = 0.0
    last_event_at: float = 0.0
    cooldown_until: float = 0.0

    def positives(self) -> int:
        return sum(self.window)


class Evaluator:
    """Turns a stream of positive/negative answers into open / update / resolved transitions.

    - open: at least `confirm.n` of the last `confirm.m` answers are positive, and the rule is not
      cooling down after its previous alert.
    - update: the alert is open and the answer is positive again, at most once per `update_every_s`.
    - resolved: the alert is open and the last `confirm.m` answers are all negative (the condition
      stopped holding for the whole confirmation window); the cooldown (`cooldown_s`) starts then.
    """

    def __init__(self, update_every_s: float = UPDATE_EVERY_S) -> None:
        self.update_every_s = update_every_s
        self._states: dict[tuple[str, str], AlertState] = {}

    def state(self, camera: str, rule: str) -> AlertState:
        return self._states.setdefault((camera, rule), AlertState())

    def is_open(self, camera: str, rule: str) -> bool:
        state = self._states.get((camera, rule))
        return bool(state and state.open)

    def observe(self, camera: str, rule: Rule, positive: bool, at: float) -> Transition | None:
        """Record one answer; returns the transition it causes, if any."""
        state = self.state(camera, rule.id)
        m = rule.confirm.m
        state.window.append(positive)
        while len(state.window) > m:
            state.window.popleft()
        if not state.open:
            if state.positives() >= rule.confirm.n and at >= state.cooldown_until:
                state.open, state.opened_at, state.last_event_at = True, at, at
                return Transition.OPEN
            return None
        if len(state.window) >= m and state.positives() == 0:
            state.open, state.alert_id = False, None
            state.cooldown_until = at + rule.cooldown_s
            state.last_event_at = at
            state.window.clear()
            return Transition.RESOLVED
        if positive and at - state.last_event_at >= self.update_every_s:
            state.last_event_at = at
            return Transition.UPDATE
        return None

    def forget(self, keep: set[tuple[str, str]]) -> list[tuple[str, str]]:
        """Drop state of (camera, rule) pairs no longer configured; returns the open ones dropped."""
        dropped = [key for key, state in self._states.items() if key not in keep and state.open]
        self._states = {key: state for key, state in self._states.items() if key in keep}
        return dropped
