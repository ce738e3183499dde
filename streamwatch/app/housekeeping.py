"""The service's background loops, each of which must outlive its own failures.

`supervised` runs a loop forever: an error in one round is logged (with its traceback) and the loop
goes on after a pause; a loop that dies anyway is restarted, and while it is down the service's
readiness says so. The loops: camera status on MQTT, rules hot reload, retention.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from streamwatch.inference.lanes import QueueStats
from streamwatch.ingest.status import CameraStatus
from streamwatch.outputs.mqtt.client import MqttOutput
from streamwatch.rules.loader import RuleSet
from streamwatch.rules.watch import RuleWatcher
from streamwatch.store.events import EventStore
from streamwatch.store.shadow import ShadowStore

log = logging.getLogger(__name__)

STATUS_LOG_S = 300.0  # how often every camera's status is logged
STATUS_PUBLISH_S = 30.0  # camera status on MQTT: on every state change, and at least this often
STATUS_CHECK_S = 2.0
RULES_POLL_S = 2.0  # how often rules/ is checked for edits
CONFIG_POLL_S = 2.0  # how often config.toml is checked for edits (its cameras apply while running)
RETENTION_S = 600.0
RESTART_PAUSE_S = 1.0
SUMMARY_S = 60.0  # how often the decisions of the last while are summed up in the log


class Loops:
    """Named background tasks, supervised; `failures` holds why a loop is down (for readiness)."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []
        self.failures: dict[str, str] = {}

    def start(self, name: str, step: Callable[[], Awaitable[None]], every_s: float, *, first_now: bool = False) -> None:
        """Call `step` every `every_s` seconds (first at once with `first_now`), for ever."""

        async def rounds() -> None:
            if not first_now:
                await asyncio.sleep(every_s)
            while True:
                try:
                    await step()
                except Exception:  # one failed round must not end the loop
                    log.exception("%s: this round failed; trying again in %.0f s", name, every_s)
                await asyncio.sleep(every_s)

        self.spawn(name, rounds)

    def spawn(self, name: str, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `body`, restarting it (after a pause) whenever it ends with an error."""

        async def supervised() -> None:
            while True:
                try:
                    await body()
                    return
                except Exception as exc:
                    self.failures[name] = f"{type(exc).__name__}: {exc}"
                    log.exception("%s stopped unexpectedly; restarting it in %.0f s", name, RESTART_PAUSE_S)
                    await asyncio.sleep(RESTART_PAUSE_S)
                    self.failures.pop(name, None)

        self.tasks.append(asyncio.create_task(supervised(), name=name))

    async def cancel(self, name: str) -> None:
        """Stop the loop called `name` (a removed camera's sampler)."""
        for task in [task for task in self.tasks if task.get_name() == name]:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.tasks.remove(task)
        self.failures.pop(name, None)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    async def __aenter__(self) -> Loops:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def problem(self) -> str | None:
        """None while every loop runs, else which are down and why (for readiness)."""
        return "; ".join(f"{name}: {why}" for name, why in self.failures.items()) or None


class StatusPublisher:
    """Camera status: retained on MQTT when it changes (checked every 2 s) and every 30 s; logged every 5 min."""

    def __init__(self, statuses: Callable[[], list[CameraStatus]], mqtt: MqttOutput | None) -> None:
        self.statuses, self.mqtt = statuses, mqtt
        self._last: dict[str, tuple[str, str]] = {}
        self._published = self._logged = time.monotonic()

    async def step(self) -> None:
        now = time.monotonic()
        statuses = self.statuses()
        changed = [s for s in statuses if self._last.get(s.id) != (s.state, s.quality)]
        due = now - self._published >= STATUS_PUBLISH_S
        if self.mqtt is not None:
            for status in statuses if due else changed:
                await self.mqtt.publish_now(self.mqtt.topics.status_message(status))
        self._last = {s.id: (s.state, s.quality) for s in statuses}
        self._published = now if due else self._published
        if now - self._logged >= STATUS_LOG_S:
            self._logged = now
            for status in statuses:
                log.info("%s", status.summary())


class RulesReload:
    """Hot reload of rules/: a new rule set goes live, then `changed` (announce, resolve what left)."""

    def __init__(self, watcher: RuleWatcher, changed: Callable[[RuleSet], Awaitable[None]]) -> None:
        self.watcher, self.changed = watcher, changed

    async def step(self) -> None:
        reloaded = await asyncio.to_thread(self.watcher.check)
        if reloaded is not None:
            log.info("rules: %d active after reload", len(reloaded.rules))
            await self.changed(reloaded)


class Retention:
    """Delete events, snapshots and clips older than `storage.retention_days`, then keep snapshots and
    clips within `storage.max_disk_gb` (the oldest clips first); at start and every few minutes."""

    def __init__(self, store: EventStore, days: int, max_bytes: int, *, shadows: ShadowStore | None = None) -> None:
        self.store, self.days, self.max_bytes = store, days, max_bytes
        self.shadows = shadows

    async def step(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(days=self.days)
        rows, files = await asyncio.to_thread(self.store.prune, cutoff)
        if rows:
            log.info("retention: deleted %d events and %d snapshots and clips older than %s", rows, files, cutoff)
        if self.shadows is not None:
            pruned = await asyncio.to_thread(self.shadows.prune, cutoff)
            if pruned:
                log.info(
                    "retention: deleted %d shadow rule decisions (older than %s, or past the most kept)", pruned, cutoff
                )
        deleted, freed = await asyncio.to_thread(self.store.cap_disk, self.max_bytes)
        if deleted:
            log.warning(
                "disk cap: deleted the %d oldest clips and snapshots (%.1f MB) to stay within storage.max_disk_gb "
                "(%g GB)",
                deleted,
                freed / 1e6,
                self.max_bytes / 1e9,
            )


class Summary:
    """For a periodic loop: one INFO line a round with what happened since the last one (the decisions
    themselves are DEBUG lines): decisions (asked the model or reused), requests dropped or failed,
    alert events."""

    def __init__(self, counts: Callable[[], tuple[int, int, int]], stats: Callable[[], QueueStats]) -> None:
        self.counts, self.stats = counts, stats  # counts: (decisions, reused, alert events) since start
        self.last = self._now()
        self.at = time.monotonic()

    def _now(self) -> tuple[int, int, int, int]:
        decisions, reused, events = self.counts()
        stats = self.stats()
        return decisions, reused, sum(stats.dropped.values()) + stats.failed, events

    async def step(self) -> None:
        now, at = self._now(), time.monotonic()
        decisions, reused, lost, events = (new - old for new, old in zip(now, self.last, strict=True))
        log.info(
            "last %.0f s: %d decisions (%d asked the model, %d reused), %d requests dropped or failed, %d alert events",
            at - self.at,
            decisions,
            decisions - reused,
            reused,
            lost,
            events,
        )
        self.last, self.at = now, at
