"""Live reconfiguration: an edited config.toml's cameras and an edited rules/ go live without a restart.

`Samplers` owns one sampling loop per watched camera. `Reconfiguration` applies edits: a new rule set
replaces the old one as a whole; a config edit adds, removes and restarts only the cameras that
differ. After either, the alerts of a (camera, rule) no longer watched resolve and MQTT announces
anew (discovery, states, values)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from streamwatch.app.housekeeping import Loops
from streamwatch.config import CameraConfig
from streamwatch.config.shard import Shard
from streamwatch.ingest.camera import CameraWorker
from streamwatch.ingest.cameras import Cameras
from streamwatch.rules.loader import ActiveRules, RuleSet
from streamwatch.rules.watch import RuleWatcher

log = logging.getLogger(__name__)

Loop = Callable[[], Coroutine[Any, Any, None]]
Watched = set[tuple[str, str]]  # (camera, rule) pairs that can alert


class Samplers:
    """One supervised sampling loop per watched camera (named `sampler-<camera>` in the loops)."""

    def __init__(self, loops: Loops, run: Callable[[CameraConfig, CameraWorker], Loop]) -> None:
        self.loops, self.run = loops, run  # `run`: a camera's sampling loop (sampling.Sampler.run)

    def start(self, camera: CameraConfig, worker: CameraWorker) -> None:
        self.loops.spawn(f"sampler-{camera.id}", self.run(camera, worker))

    async def stop(self, camera_id: str) -> None:
        await self.loops.cancel(f"sampler-{camera_id}")


@dataclass(frozen=True)
class CameraChange:
    """What a config edit did to this instance's cameras."""

    added: list[str]
    removed: list[str]
    restarted: list[str]


class Reconfiguration:
    """Applies rule and camera edits to the running parts."""

    def __init__(
        self,
        *,
        shard: Shard,
        cameras: Cameras,
        samplers: Samplers,
        rules: ActiveRules,
        rules_watch: RuleWatcher,
        resolve_unwatched: Callable[[Watched], Awaitable[object]],
        announce: Callable[[], Awaitable[None]],
    ) -> None:
        self.shard, self.cameras, self.samplers = shard, cameras, samplers
        self.rules, self.rules_watch = rules, rules_watch
        self.resolve_unwatched, self.announce = resolve_unwatched, announce

    def start(self) -> None:
        """A sampler for every camera there is now (at start)."""
        for camera in self.cameras.configs():
            self.samplers.start(camera, self.cameras.workers[camera.id])

    async def rules_changed(self, new: RuleSet) -> None:
        """A new rule set goes live; alerts whose rule went away resolve; MQTT announces anew."""
        self.rules.current = new
        await self._settle()

    async def cameras_changed(self, configs: list[CameraConfig]) -> CameraChange:
        """A config edit's cameras (all of them: this instance takes its shard's): only those added,
        removed or changed are started or stopped."""
        old = {camera.id: camera for camera in self.cameras.configs()}
        new = {camera.id: camera for camera in self.shard.select(configs)}
        for camera in [c for c in old if c not in new or new[c] != old[c]]:
            await self.samplers.stop(camera)
            await self.cameras.remove(camera)
        for camera in [c for c in new if c not in old or new[c] != old[c]]:
            self.samplers.start(new[camera], await self.cameras.add(new[camera]))
        self.rules_watch.cameras = list(configs)  # rules are checked against every configured camera
        await self._settle()  # alerts of a removed camera resolve; MQTT announces anew
        change = CameraChange(
            added=sorted(set(new) - set(old)),
            removed=sorted(set(old) - set(new)),
            restarted=sorted(c for c in set(new) & set(old) if new[c] != old[c]),
        )
        log.info("cameras changed: added %s, removed %s, restarted %s", change.added, change.removed, change.restarted)
        return change

    async def _settle(self) -> None:
        await self.resolve_unwatched(self.rules.watched(self.cameras.configs()))
        await self.announce()
