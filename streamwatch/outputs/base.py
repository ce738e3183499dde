"""The output interface: what an event becomes for one sink, and that sink's delivery of it.

An event's messages for every output are committed in the same transaction as the event (the outbox,
one queue per sink). Each output then delivers its own queue on its own: in commit order, deleting a
message only after its sink acknowledged it, retrying while the sink fails. So one sink that is down
never holds up another, and nothing is lost while any of them is.

A new output is one file: an `Output` subclass, plus its section in the config and a line in
`outputs/build.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from streamwatch.store.message import Message
from streamwatch.store.models import Event


class Output(ABC):
    name: str  # its queue in the outbox
    check: str  # its name among the readiness checks

    @abstractmethod
    def event_messages(self, event: Event, snapshot_jpeg: bytes | None, media_dir: Path | None) -> list[Message]:
        """What one event becomes for this output (stored with the event, delivered later)."""

    @abstractmethod
    def running(self) -> AbstractAsyncContextManager[Any]:
        """Delivering inside; at exit what is pending is delivered for a few seconds, the rest waits."""

    @abstractmethod
    def notify(self) -> None:
        """New messages were committed: deliver them now rather than at the next poll."""

    @abstractmethod
    def problem(self) -> str | None:
        """None while it delivers, else why not (for readiness)."""
