"""The shared inference queue: requests from many producers, batched on one model.

Producers (camera samplers, the ask command, the API) submit `Request`s from any thread or from the
event loop and get a future back. One worker thread per model forms batches: it waits until
`max_batch` requests are pending or the oldest has waited `max_wait_s`, whichever comes first, takes
requests round-robin across producers so one busy camera cannot starve the others, drops requests
whose deadline has passed (the future fails with `DroppedError`, and the drop is counted), and runs the
batch on the backend. Nothing is silently lost: every submitted request ends in exactly one of
answered, dropped (by reason) or failed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from streamwatch.errors import InferenceError
from streamwatch.inference.backends.base import Backend
from streamwatch.inference.lanes import Item, Lanes, QueueStats
from streamwatch.inference.types import Answer, AnswerKind, Request

log = logging.getLogger(__name__)


class InferenceQueue:
    """Batches requests across producers onto one backend, in a worker thread."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_batch: int = 8,
        max_wait_s: float = 0.05,
        max_pending_per_source: int = 64,
        clock: Callable[[], float] = time.monotonic,
        workers: int = 1,
    ) -> None:
        """`workers` > 1: several batches in flight, so one is prepared on the CPU (image processing)
        while another runs on the GPU; the backend serialises the model itself."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.backend = backend
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_pending_per_source = max_pending_per_source
        self._clock = clock
        self._cond = threading.Condition()
        self._stats = QueueStats()
        self._lanes = Lanes(self._stats, max_pending_per_source)
        self._stopping = False
        self._threads: list[threading.Thread] = []
        # Batches inside each backend (by id): a swapped-out backend is released once none uses it. A
        # condition of its own, so that waiting for it never takes a wake-up meant for a worker.
        self._use = threading.Condition()
        self._users: dict[int, int] = {}

    # -- producer side -------------------------------------------------------------------------
    def submit(self, request: Request) -> Future[Answer]:
        """Queue a request; the future resolves to an `Answer` or fails with `DroppedError`."""
        future: Future[Answer] = Future()
        with self._cond:
            self._stats.submitted += 1
            if self._stopping:
                self._lanes.drop(future, "shutdown")
                return future
            if not self._stats.pending and not self._stats.in_flight:
                self._stats.progress_at = self._clock()  # idle until now: nothing was overdue
            self._lanes.add(Item(request, future))
            self._cond.notify()
        return future

    async def ask(self, request: Request) -> Answer:
        """Submit from the event loop and await the answer without blocking the loop."""
        return await asyncio.wrap_future(self.submit(request))

    def stats(self) -> QueueStats:
        with self._cond:
            return self._stats.copy()

    def stalled_for(self) -> float:
        """Seconds requests have waited without any model call finishing (0 when idle or moving)."""
        with self._cond:
            return self._stats.stalled_for(self._clock())

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        for index in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"inference-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, *, drain: bool = True, timeout: float = 30.0) -> bool:
        """Stop the worker. With `drain`, answer what is pending first; the rest is dropped. False when
        a worker is still inside a model call after `timeout` (it is left behind: the backend must not
        be closed under it)."""
        with self._cond:
            self._stopping = True
            if not drain:
                self._lanes.drop_all("shutdown")
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        stopped = True
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.error("inference worker still inside a model call after %.0f s; leaving it", timeout)
                stopped = False
        self._threads = []
        with self._cond:
            self._lanes.drop_all("shutdown")
        return stopped

    # -- worker side ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._execute(batch)
            except Exception:  # the worker must outlive any bug in one batch
                log.exception("inference worker: unexpected error; failing the batch")
                with self._cond:
                    for item in batch:
                        if not item.future.done():
                            self._stats.failed += 1
                            item.future.set_exception(InferenceError("inference failed; see the service log"))
            finally:
                with self._cond:
                    self._stats.in_flight -= len(batch)

    def _next_batch(self) -> list[Item] | None:
        """Block until a batch is due; None once stopping with nothing left to drain."""
        with self._cond:
            while not self._stats.pending:
                if self._stopping:
                    return None
                self._cond.wait()
            window_end = self._lanes.oldest_submit() + self.max_wait_s
            while self._stats.pending < self.max_batch and not self._stopping:
                remaining = window_end - self._clock()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._lanes.take(self.max_batch, self._clock())

    def _execute(self, batch: Sequence[Item]) -> None:
        for kind in AnswerKind:
            group = [item for item in batch if item.request.kind is kind]
            if group and kind is AnswerKind.GENERATE:  # one length per generate call: nobody gets more than asked
                for tokens in sorted({item.request.max_new_tokens for item in group}):
                    self._run_group(kind, [item for item in group if item.request.max_new_tokens == tokens])
            elif group:
                self._run_group(kind, group)

    def _run_group(self, kind: AnswerKind, group: Sequence[Item]) -> None:
        try:
            texts, confidences, counts, model = self._call_backend(kind, [item.request for item in group])
        except Exception:
            with self._cond:
                self._stats.progress_at = self._clock()  # the model answered, if with an error
            if len(group) > 1:
                # One bad input must not fail its neighbours: answer each on its own.
                log.warning("batch of %d failed; retrying its requests one by one", len(group), exc_info=True)
                for item in group:
                    self._run_group(kind, [item])
                return
            log.exception("inference failed for a request from %s", group[0].request.source)
            with self._cond:
                self._stats.failed += 1
            group[0].future.set_exception(InferenceError("inference failed; see the service log"))
            return
        done = self._clock()
        with self._cond:
            self._stats.progress_at = done
            self._stats.batch_sizes[len(group)] += 1
            self._stats.answered += len(group)
            self._stats.last_latency_s = done - group[-1].request.submitted_at
        for item, text, confidence, count in zip(group, texts, confidences, counts, strict=True):
            latency = done - item.request.submitted_at
            item.future.set_result(Answer(text, confidence, latency, len(group), model, tokens=count))

    def _call_backend(
        self, kind: AnswerKind, requests: Sequence[Request]
    ) -> tuple[list[str], list[float | None], list[int | None], str]:
        """Texts, confidences, generated tokens and the name of the backend that answered (the one in use
        when it began)."""
        prompts = [r.prompt for r in requests]
        with self._use:
            backend = self.backend
            self._users[id(backend)] = self._users.get(id(backend), 0) + 1
        try:
            if kind is AnswerKind.YES_NO:
                scores = backend.score_yes_no(prompts)
                return [s.text for s in scores], [s.p_yes for s in scores], [1] * len(scores), backend.name
            counted = backend.generate_counted(prompts, requests[0].max_new_tokens)
            texts = [text for text, _count in counted]
            return texts, [None] * len(texts), [count for _text, count in counted], backend.name
        finally:
            with self._use:
                self._users[id(backend)] -= 1
                if not self._users[id(backend)]:
                    del self._users[id(backend)]
                self._use.notify_all()

    # -- another model, between batches ----------------------------------------------------------
    def swap(self, backend: Backend) -> Backend:
        """Batches from now on go to `backend`; returns the one they went to (batches already inside it
        finish there)."""
        with self._use:
            old, self.backend = self.backend, backend
        return old

    def wait_unused(self, backend: Backend, timeout: float) -> bool:
        """Wait until no batch is inside `backend`; False if one still is after `timeout` seconds."""
        with self._use:
            return self._use.wait_for(lambda: id(backend) not in self._users, timeout)
