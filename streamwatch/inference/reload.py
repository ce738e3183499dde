"""A new model version without a restart: the local model directory and the adapter (model.adapter) are
watched; a changed one is loaded beside the running model, swapped in between batches, and the old one
released once no batch uses it. A version that fails to load leaves the running model in place and says
why: in the log, in /readyz's `model` detail and in the metrics.

A change is acted on once the files stood still for one poll (a copy in progress is not loaded half
written); it is tried once per version: the next attempt comes with the next change.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamwatch.config import Settings
from streamwatch.errors import StartupError
from streamwatch.filewatch import FileWatch
from streamwatch.inference.adapter import CONFIG, WEIGHTS
from streamwatch.inference.backends.base import Backend
from streamwatch.inference.engine import Engine, Model

log = logging.getLogger(__name__)

MAX_FILES = 1000  # a watched directory's entries looked at
RELEASE_WAIT_S = 120.0  # how long the old model waits for its last batch before it is left to the collector

Signature = tuple[tuple[str, tuple[tuple[str, int, int], ...] | None], ...]


def signature(paths: list[tuple[Path, Callable[[str], bool]]]) -> Signature:
    """Name, size and modification time of the files that make each watched directory's model (None:
    the directory is gone)."""
    result: list[tuple[str, tuple[tuple[str, int, int], ...] | None]] = []
    for path, counts in paths:
        try:
            with os.scandir(path) as entries:
                files = []
                for index, entry in enumerate(entries):
                    if index >= MAX_FILES:
                        break
                    if counts(entry.name) and entry.is_file():
                        stat = entry.stat()
                        files.append((entry.name, stat.st_size, stat.st_mtime_ns))
            result.append((str(path), tuple(sorted(files))))
        except OSError:
            result.append((str(path), None))
    return tuple(result)


def _adapter_file(name: str) -> bool:
    return name == CONFIG or name in WEIGHTS


def _model_file(name: str) -> bool:
    """Reports and pictures beside a checkpoint (REPORT.md, a finetune report) are not the model."""
    return not name.startswith(".") and not name.lower().endswith((".md", ".png", ".jpg", ".html"))


@dataclass
class ModelState:
    """What /readyz and the metrics say about the model in use (read from the engine's `Model`, which a
    swap changes) and its reloads."""

    model: Model
    loaded_at: float
    reloads: int = 0
    failures: int = 0
    last_error: str | None = None  # the last reload's failure, until a later one succeeds

    def as_dict(self) -> dict[str, Any]:
        backend = self.model.backend
        return {
            "id": backend.name,
            "adapter": backend.adapter,
            "loaded_at": self.loaded_at,
            "reloads": self.reloads,
            "reload_failures": self.failures,
            "reload_error": self.last_error,
        }


class ModelReload:
    """For a periodic loop (`step`): reloads the model when its files change. `now`: reload at once, for
    a release that just wrote the adapter (with or without the watch)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        load: Callable[[Settings], Backend],
        state: ModelState,
    ) -> None:
        self.settings, self.engine, self.load, self.state = settings, engine, load, state
        self.paths = watched_paths(settings)
        self.watch = FileWatch(lambda: signature(self.paths))
        self.loaded = self.watch.applied  # the files of the model that answers
        self._reloading = asyncio.Lock()

    async def step(self) -> None:
        edit = await asyncio.to_thread(self.watch.poll)
        if edit is not None:
            await self._load(edit.now)

    async def now(self) -> None:
        """What the model's folders hold now, loaded unless it is what answers already (a release wrote
        the adapter completely before it returned: no need to wait for it to stand still)."""
        await self._load(await asyncio.to_thread(self.watch.accept))

    async def _load(self, files: Signature) -> None:
        async with self._reloading:
            if files == self.loaded:
                return  # loaded already (a release handed it over, then the watch saw it too)
            self.loaded = files
            await self.reload()

    async def reload(self) -> None:
        what = self.settings.model.id + (
            f" with adapter {self.settings.model.adapter}" if self.settings.model.adapter else ""
        )
        log.info("model files changed: loading %s beside the running model", what)
        try:
            backend = await asyncio.to_thread(self.load, self.settings)
        except StartupError as exc:
            self._failed(str(exc))
            return
        except Exception as exc:  # any factory's error: the running model stays
            self._failed(f"{type(exc).__name__}: {exc}")
            return
        problem = self.engine.limits_problem(backend)
        if problem is not None:
            await asyncio.to_thread(backend.close)
            self._failed(problem)
            return
        old = self.engine.swap(backend)
        self.state.loaded_at, self.state.last_error = time.time(), None
        self.state.reloads += 1
        answering = backend.name + (f" with adapter {backend.adapter}" if backend.adapter else " without an adapter")
        log.info("model reloaded: %s now answers; releasing the previous one", answering)
        await asyncio.to_thread(self.engine.release, old, RELEASE_WAIT_S)

    def _failed(self, why: str) -> None:
        self.state.failures += 1
        self.state.last_error = why
        log.error("model reload failed, the running model stays: %s", why)


def watched_paths(settings: Settings) -> list[tuple[Path, Callable[[str], bool]]]:
    """The local model directory (a hub id is not watched) and the adapter directory, where set; each
    with which of its files make the model."""
    paths: list[tuple[Path, Callable[[str], bool]]] = []
    ref = Path(settings.model_ref())
    if settings.model.backend == "transformers" and ref.is_dir():
        paths.append((ref, _model_file))
    adapter = settings.adapter_path()
    if adapter is not None:
        paths.append((adapter, _adapter_file))
    return paths
