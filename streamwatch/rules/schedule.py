"""When is a rule due on a camera: its sample interval, active hours and cron schedule."""

from __future__ import annotations

from datetime import datetime

from apscheduler.triggers.cron import CronTrigger

from streamwatch.rules.model import Rule, within_hours


class DueTracker:
    """Per camera: which of its rules are due now. Rules may change between calls (hot reload)."""

    def __init__(self, camera_interval_s: float) -> None:
        self.camera_interval_s = camera_interval_s
        self._next_due: dict[str, float] = {}
        self._cron: dict[str, tuple[str, CronTrigger, datetime | None]] = {}

    def due(self, rules: list[Rule], now: float, local: datetime) -> list[Rule]:
        """`now`: monotonic seconds; `local`: the local wall-clock time (aware) for hours and cron."""
        result = []
        for rule in rules:
            if not within_hours(rule.active_hours, local.hour * 60 + local.minute):
                continue
            if rule.schedule is not None:
                if self._cron_due(rule, local):
                    result.append(rule)
                continue
            if now >= self._next_due.get(rule.id, 0.0):
                self._next_due[rule.id] = now + (rule.sample_interval_s or self.camera_interval_s) - 0.01
                result.append(rule)
        return result

    def _cron_due(self, rule: Rule, local: datetime) -> bool:
        """Due once each time the cron schedule fires (a missed firing is not repeated)."""
        assert rule.schedule is not None
        cached = self._cron.get(rule.id)
        if cached is None or cached[0] != rule.schedule:
            trigger = CronTrigger.from_crontab(rule.schedule, timezone=local.tzinfo)
            cached = (rule.schedule, trigger, trigger.get_next_fire_time(None, local))
        schedule, trigger, next_fire = cached
        if next_fire is None or local < next_fire:
            self._cron[rule.id] = cached
            return False
        self._cron[rule.id] = (schedule, trigger, trigger.get_next_fire_time(next_fire, local))
        return True
