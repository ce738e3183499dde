"""The waiting side of the inference queue: one lane of requests per producer, and the queue's counters.

Every method is called with the queue's lock held. A producer that floods only overflows its own lane
(its oldest request is dropped); batches are taken round-robin across lanes, a producer's consecutive
requests about one frame together (several rules share one pass over the image), and expired requests
are dropped on the way. Every request ends in exactly one of answered, failed or dropped (by reason).
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from streamwatch.errors import DroppedError
from streamwatch.inference.types import Answer, Request


@dataclass(frozen=True)
class Item:
    """A submitted request and the future its producer waits on."""

    request: Request
    future: Future[Answer]


@dataclass
class QueueStats:
    """Counters since start. `submitted == answered + failed + sum(dropped) + pending`."""

    submitted: int = 0
    answered: int = 0
    failed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # by reason
    batch_sizes: Counter[int] = field(default_factory=Counter)  # forward passes by batch size
    pending: int = 0
    last_latency_s: float = 0.0
    in_flight: int = 0  # taken into a batch, not yet answered or failed
    progress_at: float = 0.0  # monotonic: the last model call that finished, or when work arrived at an idle queue

    def copy(self) -> QueueStats:
        return QueueStats(
            self.submitted,
            self.answered,
            self.failed,
            Counter(self.dropped),
            Counter(self.batch_sizes),
            self.pending,
            self.last_latency_s,
            self.in_flight,
            self.progress_at,
        )

    def stalled_for(self, now: float) -> float:
        """Seconds that requests have been waiting (queued or on the model) with no model call finishing."""
        return max(0.0, now - self.progress_at) if self.pending or self.in_flight else 0.0


class Lanes:
    def __init__(self, stats: QueueStats, max_per_source: int) -> None:
        self.stats = stats
        self.max_per_source = max_per_source
        self._lanes: dict[str, deque[Item]] = {}

    def add(self, item: Item) -> None:
        lane = self._lanes.setdefault(item.request.source, deque())
        if len(lane) >= self.max_per_source:
            self.stats.pending -= 1
            self.drop(lane.popleft().future, "overflow", f"more than {self.max_per_source} waiting")
        lane.append(item)
        self.stats.pending += 1

    def oldest_submit(self) -> float:
        return min(lane[0].request.submitted_at for lane in self._lanes.values() if lane)

    def take(self, max_batch: int, now: float) -> list[Item]:
        """Up to `max_batch` live requests, one frame per producer per round; expired ones are dropped.
        Producers served this time go to the back of the line for the next batch."""
        batch: list[Item] = []
        served: list[str] = []
        while len(batch) < max_batch and self._lanes:
            for source in list(self._lanes):
                lane = self._lanes[source]
                image = lane[0].request.image
                while lane and lane[0].request.image is image and len(batch) < max_batch:
                    self._admit(lane.popleft(), now, batch)
                if not lane:
                    del self._lanes[source]
                if source not in served:
                    served.append(source)
                if len(batch) >= max_batch:
                    break
        for source in served:
            if source in self._lanes:
                self._lanes[source] = self._lanes.pop(source)
        return batch

    def _admit(self, item: Item, now: float, batch: list[Item]) -> None:
        self.stats.pending -= 1
        if item.request.deadline <= now:
            self.drop(item.future, "deadline", f"waited {now - item.request.submitted_at:.2f} s")
        elif item.future.set_running_or_notify_cancel():
            batch.append(item)
            self.stats.in_flight += 1
        else:
            self.stats.dropped["cancelled"] += 1

    def drop(self, future: Future[Answer], reason: str, detail: str = "") -> None:
        self.stats.dropped[reason] += 1
        if future.set_running_or_notify_cancel():
            future.set_exception(DroppedError(reason, detail))

    def drop_all(self, reason: str) -> None:
        for lane in self._lanes.values():
            for item in lane:
                self.stats.pending -= 1
                self.drop(item.future, reason)
        self._lanes.clear()
