"""Delivering an output's queue in the outbox: in commit order, each message deleted only after it was
sent, one output's failures never touching another's queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from streamwatch.outputs.base import Output
from streamwatch.store.message import Message
from streamwatch.store.outbox import Outbox

log = logging.getLogger(__name__)

Send = Callable[[Message], Awaitable[None]]  # returns once the sink acknowledged it; raises otherwise


async def deliver_waiting(
    outbox: Outbox, send: Send, *, until: int | None = None, stopping: Callable[[], bool] = lambda: False
) -> int:
    """Send the waiting messages in order (those up to id `until`, when given), deleting each once sent;
    returns how many. A failed send raises, and that message and those after it stay queued."""
    sent = 0
    while not stopping():
        queued = [q for q in await asyncio.to_thread(outbox.pending, 100) if until is None or q.id <= until]
        if not queued:
            return sent
        for item in queued:
            await send(item.message)
            await asyncio.to_thread(outbox.delivered, item.id)
            sent += 1
    return sent


class Relay:
    """The delivery of an output that keeps no connection of its own (a file, an HTTP endpoint): every
    waiting message in order; a failed send is logged, kept for readiness and retried after a backoff
    (doubling from `retry_initial_s` to `retry_max_s`), or at once when a new message is committed."""

    def __init__(
        self, name: str, outbox: Outbox, send: Send, *, retry_initial_s: float = 1.0, retry_max_s: float = 30.0
    ) -> None:
        self.name, self.outbox, self.send = name, outbox, send
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.last_error: str | None = None
        self.delivered = 0
        self._wake = asyncio.Event()

    def notify(self) -> None:
        self._wake.set()

    def problem(self) -> str | None:
        return None if self.last_error is None else f"{self.name} cannot deliver: {self.last_error}"

    async def run(self) -> None:
        backoff = self.retry_initial_s
        while True:
            self._wake.clear()
            try:
                self.delivered += await deliver_waiting(self.outbox, self.send)
            except Exception as exc:  # the sink failed: keep the message, say why, try again later
                if self.last_error is None:
                    log.error(
                        "%s: cannot deliver (%s: %s); retrying, nothing is lost", self.name, type(exc).__name__, exc
                    )
                self.last_error = f"{type(exc).__name__}: {exc}"
                with contextlib.suppress(TimeoutError):  # a new message tries again at once
                    await asyncio.wait_for(self._wake.wait(), timeout=backoff)
                backoff = min(self.retry_max_s, backoff * 2)
                continue
            if self.last_error is not None:
                log.info("%s: delivering again", self.name)
                self.last_error, backoff = None, self.retry_initial_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    @contextlib.asynccontextmanager
    async def running(self, drain_s: float = 5.0) -> AsyncIterator[Relay]:
        """Delivering inside; at exit what is waiting gets up to `drain_s` to go out, the rest waits for
        the next start."""
        task = asyncio.create_task(self.run(), name=self.name)
        try:
            yield self
        finally:
            deadline = asyncio.get_running_loop().time() + drain_s
            while self.last_error is None and asyncio.get_running_loop().time() < deadline:
                if await asyncio.to_thread(self.outbox.size) == 0:
                    break
                self.notify()
                await asyncio.sleep(0.05)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class RelayedOutput(Output):
    """An output delivered by a `Relay` (`self.relay`): its running, notify and problem are the relay's."""

    relay: Relay

    def running(self) -> AbstractAsyncContextManager[Any]:
        return self.relay.running()

    def notify(self) -> None:
        self.relay.notify()

    def problem(self) -> str | None:
        return self.relay.problem()
