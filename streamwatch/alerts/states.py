"""Alert state per (camera, rule): confirm with N-of-M, rate-limit updates, resolve, cool down."""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field

from streamwatch.rules.model import Rule
from streamwatch.store.alerts import SavedAlert
from streamwatch.vocabulary import EventKind

UPDATE_EVERY_S = 60.0  # while an alert holds, at most one `update` event per this many seconds


Transition = EventKind  # what the evaluator returns is what the events are called


@dataclass(frozen=True)
class Change:
    """What one answer did to an alert: the transition, and the alert's id (the uid of its `open` event,
    which ties its update and resolved events to it)."""

    transition: Transition
    alert_id: str
    held_s: float | None = None  # for_s rules: how long the condition had held when the alert opened
    previous: str | None = None  # on = "change" rules: the answer before the change


@dataclass
class AlertState:
    """What the evaluator remembers about one rule on one camera."""

    window: deque[bool] = field(default_factory=deque)  # the last m answers, newest last
    open: bool = False
    alert_id: str | None = None  # the event id of the `open` event while open
    opened_at: float = 0.0
    last_event_at: float = 0.0
    cooldown_until: float = 0.0
    holding_since: float | None = None  # since when the confirmation has been met without a break
    baseline: str | None = None  # on = "change": the answer a change is measured from
    armed: bool = False  # on = "rising": a negative answer was seen since the last alert (or the start)

    def positives(self) -> int:
        return sum(self.window)


class Evaluator:
    """Turns a stream of positive/negative answers into open / update / resolved transitions.

    - open: at least `confirm.n` of the last `confirm.m` answers are positive, and the rule is not
      cooling down after its previous alert; with `for_s`, that has held without a break for at least
      `for_s` seconds; with `on = "rising"`, a negative answer came since the last alert (or the start),
      so a condition that is already true when watching starts does not alert until it was false.
    - `on = "change"` (count, choice): an answer is positive when it differs from the last alerted one
      (the first answer seen, at first) by at least `min_delta` for counts; an opening alert takes the
      new answer as the one later changes are measured from.
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

    def observe(self, camera: str, rule: Rule, positive: bool, at: float, value: str | None = None) -> Change | None:
        """Record one answer (`value`: what an on = "change" rule compares, from Rule.value_of); returns
        the change it causes, if any. An alert gets its id when it opens. `at` is the frame's time."""
        state = self.state(camera, rule.id)
        if rule.on == "change":
            positive = value is not None and state.baseline is not None and rule.changed(state.baseline, value)
            if state.baseline is None:
                state.baseline = value
        m = rule.confirm.m
        state.window.append(positive)
        while len(state.window) > m:
            state.window.popleft()
        state.armed = state.armed or not positive
        met = state.positives() >= rule.confirm.n
        state.holding_since = (at if state.holding_since is None else state.holding_since) if met else None
        if not state.open:
            return self._open(state, rule, at, value) if met else None
        alert_id = state.alert_id or uuid.uuid4().hex
        if rule.on == "change" and positive:
            state.baseline = value
        if len(state.window) >= m and state.positives() == 0:
            state.open, state.alert_id = False, None
            state.cooldown_until = at + rule.cooldown_s
            state.last_event_at = at
            state.window.clear()
            return Change(Transition.RESOLVED, alert_id)
        if positive and at - state.last_event_at >= self.update_every_s:
            state.last_event_at = at
            return Change(Transition.UPDATE, alert_id)
        return None

    def _open(self, state: AlertState, rule: Rule, at: float, value: str | None) -> Change | None:
        held = at - state.holding_since if state.holding_since is not None else 0.0
        if at < state.cooldown_until or held < rule.for_s or (rule.on == "rising" and not state.armed):
            return None
        state.open, state.opened_at, state.last_event_at = True, at, at
        state.alert_id, state.armed = uuid.uuid4().hex, False
        previous, state.baseline = (state.baseline, value) if rule.on == "change" else (None, state.baseline)
        return Change(Transition.OPEN, state.alert_id, held if rule.for_s else None, previous)

    # -- persistence: the alert's state survives restarts (store/alerts.py) -------------------------
    def saved(self, camera: str, rule: str) -> SavedAlert:
        """What to store for this alert now (its confirmation window starts afresh after a restart)."""
        state = self.state(camera, rule)
        return SavedAlert(
            camera, rule, state.open, state.alert_id, state.opened_at, state.last_event_at, state.cooldown_until
        )

    def restore(self, saved: SavedAlert) -> None:
        """Continue where a previous run left off: an open alert stays open under its id (the normal
        confirmation resolves it when the condition no longer holds), a cooldown keeps running."""
        self._states[(saved.camera, saved.rule)] = AlertState(
            open=saved.open,
            alert_id=saved.alert_id if saved.open else None,
            opened_at=saved.opened_at,
            last_event_at=saved.last_event_at,
            cooldown_until=saved.cooldown_until,
        )

    def open_alerts(self) -> list[tuple[str, str]]:
        return [key for key, state in self._states.items() if state.open]

    def close(self, camera: str, rule: str) -> str | None:
        """End an open alert that is no longer watched (its rule or camera went away); returns its id."""
        state = self._states.pop((camera, rule), None)
        return state.alert_id if state is not None and state.open else None
