"""What every long-running command shares: how it is stopped, and how it refuses to start."""

from __future__ import annotations

import signal
import sys
import threading


def handled_signals() -> tuple[signal.Signals, ...]:
    """SIGINT and SIGTERM stop the service when it runs in the main thread on a POSIX system (the
    event loop can only take signal handlers there); elsewhere its owner stops it."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return ()
    return (signal.SIGINT, signal.SIGTERM)


class StartupError(Exception):
    """The service cannot start as configured; the message says what to change."""
