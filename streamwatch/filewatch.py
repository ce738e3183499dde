"""Polling files for edits, one behaviour for config.toml, rules/ and the model's folders.

A watch reads a cheap signature of what it watches (sizes and modification times, or why it cannot be
read) at every poll. A change is acted on once it has stood still for one poll: an editor's save, a
copy or an `rsync` in progress is never read half written. Each change is reported once; the next one
comes with the next edit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")


@dataclass(frozen=True)
class Edit(Generic[S]):
    """A settled change: the signature acted on before, and now."""

    before: S
    now: S


class FileWatch(Generic[S]):
    """`poll` says when what `read` returns has changed since the last change acted on and has stood
    still since the previous poll. `read` may raise: the error goes to the caller and nothing moves."""

    def __init__(self, read: Callable[[], S]) -> None:
        self.read = read
        self.applied: S = read()  # acted on (at start: what was loaded)
        self.seen: S = self.applied  # at the previous poll

    def accept(self) -> S:
        """What is there now, taken as acted on (it was loaded by other means): no poll reports it."""
        self.applied = self.seen = self.read()
        return self.applied

    def poll(self) -> Edit[S] | None:
        now = self.read()
        changed, settled = now != self.applied, now == self.seen
        self.seen = now
        if not (changed and settled):
            return None  # unchanged, or still being written: look again next poll
        edit = Edit(self.applied, now)
        self.applied = now
        return edit
