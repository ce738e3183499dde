"""What every long-running command shares: how it is stopped, and how it refuses to start."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


def handled_signals() -> tuple[signal.Signals, ...]:
    """SIGINT and SIGTERM stop the service when it runs in the main thread on a POSIX system (the
    event loop can only take signal handlers there); elsewhere its owner stops it."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return ()
    return (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stopped_by_signals(stop: asyncio.Event) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM (where this thread can take them) set `stop`."""
    loop = asyncio.get_running_loop()
    signals = handled_signals()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def wait_for_stop(stop: asyncio.Event, duration_s: float | None) -> None:
    """Until `stop` is set, or `duration_s` seconds have passed (None: no limit)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=duration_s)
