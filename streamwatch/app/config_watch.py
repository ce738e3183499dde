"""config.toml edited while running: its cameras apply within seconds, without a restart.

For a periodic loop (`step`): once the file has changed and stood still for one poll (an editor's
write is finished: streamwatch.filewatch), it is read and checked whole. An invalid edit is refused with its file:line
problems and the running cameras stay (readiness says so until the file is fixed). A valid one hands
its cameras to `apply` (which adds, removes and restarts only the cameras that differ); any other
section that changed is named in the log: it needs a restart. A file deleted, replaced by a broken link
or a link loop is an error in the log and in readiness (the next start would fail) until it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from streamwatch.config import CameraConfig, Settings, load_settings
from streamwatch.errors import DataFileError
from streamwatch.filewatch import FileWatch

log = logging.getLogger(__name__)

Signature = tuple[int, int] | str  # (mtime, size), or why the file cannot be read


def _signature(path: Path) -> Signature:
    try:
        stat = path.stat()
    except OSError as exc:  # deleted, a broken link or a link loop, no permission
        return exc.strerror or type(exc).__name__
    return stat.st_mtime_ns, stat.st_size


def restart_needed(old: Settings, new: Settings) -> list[str]:
    """The sections (and top-level keys) other than `cameras` that differ: they apply at a restart."""
    names = [name for name in type(old).model_fields if name not in ("cameras", "source")]
    return [name for name in names if getattr(old, name) != getattr(new, name)]


class ConfigWatch:
    def __init__(self, settings: Settings, apply: Callable[[list[CameraConfig]], Awaitable[object]]) -> None:
        self.path, self.current, self.apply = settings.source, settings, apply
        self.started = settings  # what runs for every section but the cameras, until a restart
        self.watch = FileWatch(lambda: _signature(self.path))
        self.error: str | None = None  # why the file on disk is not applied (readiness)

    def problem(self) -> str | None:
        return None if self.error is None else f"{self.path} changed and is not applied: {self.error}"

    async def step(self) -> None:
        edit = await asyncio.to_thread(self.watch.poll)
        if edit is None:
            return
        if isinstance(edit.now, str):  # gone: the running settings stay, and the next start would fail
            self.error = f"it cannot be read ({edit.now}); the next start would fail"
            log.error(
                "%s cannot be read (%s): the running settings stay; restore it before a restart", self.path, edit.now
            )
            return
        try:
            new = await asyncio.to_thread(load_settings, self.path)
        except DataFileError as exc:
            self.error = f"{len(exc.problems)} problem(s), first: {exc.problems[0]}"
            log.error("%s changed but is not applied, the running cameras stay:\n%s", self.path, exc)
            return
        except OSError as exc:
            self.error = str(exc)
            log.error("%s changed but cannot be read (%s); the running cameras stay", self.path, exc)
            return
        self.error = None
        later = restart_needed(self.started, new)  # a value set back to the running one needs nothing
        if later:
            log.warning("%s: %s changed: restart streamwatch to apply it", self.path, ", ".join(later))
        if new.cameras != self.current.cameras:
            await self.apply(list(new.cameras))
        elif not later:
            log.info("%s changed; its cameras are the same", self.path)
        self.current = new
