"""A notification target's limit: at most `max_per_hour` notifications in any hour, counting only those
that went out, so a target under steady load sends what the limit has room for in every hour rather
than falling silent. Critical notifications always go out (they take room in the window too).

The window holds wall-clock times, so it can be rebuilt at start from the events of the last hour (the
same decisions made again, in order): a restart neither forgets the limit nor grants a fresh hour.
"""

from __future__ import annotations

import logging
from collections import deque

from streamwatch.vocabulary import Severity

log = logging.getLogger(__name__)

HOUR_S = 3600.0


class HourlyLimit:
    def __init__(self, target: str, max_per_hour: int, window_s: float = HOUR_S) -> None:
        self.target, self.max_per_hour, self.window_s = target, max_per_hour, window_s
        self.sent_at: deque[float] = deque()  # wall-clock times of what went out within the window
        self.held_since: float | None = None  # the first held-back notification since the last one let through

    def admit(self, severity: str, at: float, *, quietly: bool = False) -> bool:
        """Whether a notification of `severity` committed at `at` (wall clock, non-decreasing) goes out;
        what goes out is counted. The first one held back of a stretch is logged (unless `quietly`)."""
        while self.sent_at and at - self.sent_at[0] >= self.window_s:
            self.sent_at.popleft()
        if severity == Severity.CRITICAL:
            self.sent_at.append(at)
            return True
        if len(self.sent_at) < self.max_per_hour:
            self.sent_at.append(at)
            self.held_since = None  # a stretch of holding back ends when one is let through
            return True
        if self.held_since is None:
            self.held_since = at
            if not quietly:
                log.warning(
                    "notification target %s: %d sent within the last hour (max_per_hour); holding back "
                    "the others until there is room (critical ones always go out)",
                    self.target,
                    len(self.sent_at),
                )
        return False
