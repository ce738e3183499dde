"""Is the model answering? Requests waiting while no model call finished for a bounded time is a stall.

A model call that never returns (a prompt the model cannot hold, a wedged GPU) stops every camera at
once. The queue cannot interrupt it, but it must not look healthy: the watchdog turns the queue's
"waiting without progress" time into a readiness problem, logged at ERROR when the stall begins and
at INFO when answers flow again.
"""

from __future__ import annotations

import logging

from streamwatch.inference.queue import InferenceQueue

log = logging.getLogger(__name__)


class ModelWatchdog:
    def __init__(self, queue: InferenceQueue, stall_timeout_s: float) -> None:
        self.queue = queue
        self.stall_timeout_s = stall_timeout_s
        self.stalled = False

    async def step(self) -> None:
        """For a periodic loop: checks, so that a stall is logged when it begins and when it ends."""
        self.problem()

    def problem(self) -> str | None:
        """Why the model is not answering, or None; logs when that changes. Cheap: call it often."""
        waited = self.queue.stalled_for()
        if waited <= self.stall_timeout_s:
            if self.stalled:
                log.info("model: answering again")
                self.stalled = False
            return None
        stats = self.queue.stats()
        reason = (
            f"no model call finished for {waited:.0f} s while {stats.pending + stats.in_flight} requests "
            f"wait (model.stall_timeout_s = {self.stall_timeout_s:g})"
        )
        if not self.stalled:
            log.error("model: %s; cameras are not being watched", reason)
            self.stalled = True
        return reason
