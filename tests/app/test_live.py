"""Live reconfiguration without the service: real camera workers (image folders), real loops and rules;
the sampling loop is a stand-in that says it runs (the real one: test_service, test_cameras_live)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PIL import Image

from streamwatch.app.housekeeping import Loops
from streamwatch.app.live import Loop, Reconfiguration, Samplers
from streamwatch.config import CameraConfig
from streamwatch.config.shard import Shard
from streamwatch.ingest.camera import CameraWorker
from streamwatch.ingest.cameras import Cameras
from streamwatch.rules.loader import ActiveRules, load_rules
from streamwatch.rules.watch import RuleWatcher

RULES = """
[[rules]]
id = "{id}"
title = "Anyone"
cameras = [{cameras}]
question = "Is anyone there? Answer yes or no."
"""


class Site:
    def __init__(self, folder: Path, shard: str = "1/1") -> None:
        (folder / "pictures").mkdir()
        Image.new("RGB", (64, 48), (90, 90, 90)).save(folder / "pictures" / "still.png")
        self.folder = folder
        self.rules_dir = folder / "rules"
        self.rules_dir.mkdir()
        self.running: dict[str, int] = {}  # camera -> samplers started for it, while one runs
        self.resolved: list[set[tuple[str, str]]] = []
        self.announced = 0
        self.shard = Shard.parse(shard)

    def camera(self, camera_id: str, interval_s: float = 1.0) -> CameraConfig:
        return CameraConfig(id=camera_id, url=str(self.folder / "pictures"), sample_interval_s=interval_s)

    def rules(self, rule_id: str, cameras: list[str], configs: list[CameraConfig]) -> ActiveRules:
        listed = ", ".join(f'"{c}"' for c in cameras)
        (self.rules_dir / "rules.toml").write_text(RULES.format(id=rule_id, cameras=listed), encoding="utf-8")
        return ActiveRules(load_rules(self.rules_dir, configs))

    def sampler(self, camera: CameraConfig, worker: CameraWorker) -> Loop:
        async def run() -> None:
            assert worker.camera == camera
            self.running[camera.id] = self.running.get(camera.id, 0) + 1
            try:
                await asyncio.Event().wait()
            finally:
                self.running[camera.id] -= 1

        return run

    async def resolve(self, watched: set[tuple[str, str]]) -> None:
        self.resolved.append(watched)

    async def announce(self) -> None:
        self.announced += 1

    def live(self, cameras: Cameras, loops: Loops, rules: ActiveRules, configs: list[CameraConfig]) -> Reconfiguration:
        return Reconfiguration(
            shard=self.shard,
            cameras=cameras,
            samplers=Samplers(loops, self.sampler),
            rules=rules,
            rules_watch=RuleWatcher(self.rules_dir, configs, rules.current),
            resolve_unwatched=self.resolve,
            announce=self.announce,
        )


async def settled() -> None:
    for _ in range(5):  # the loops' tasks start and end on the next turns of the event loop
        await asyncio.sleep(0)


def test_camera_edits_start_stop_and_restart_only_what_differs(tmp_path: Path) -> None:
    site = Site(tmp_path)
    gate, dock, yard = site.camera("gate"), site.camera("dock"), site.camera("yard")
    rules = site.rules("anyone", ["gate", "dock", "yard"], [gate, dock, yard])

    async def main() -> None:
        async with Cameras([gate, dock]) as cameras, Loops() as loops:
            live = site.live(cameras, loops, rules, [gate, dock])
            live.start()
            await settled()
            assert site.running == {"gate": 1, "dock": 1}
            gate_worker = cameras.workers["gate"]

            # dock goes, yard comes, gate stays untouched
            change = await live.cameras_changed([gate, yard])
            await settled()
            assert (change.added, change.removed, change.restarted) == (["yard"], ["dock"], [])
            assert site.running == {"gate": 1, "dock": 0, "yard": 1}
            assert cameras.workers["gate"] is gate_worker and set(cameras.workers) == {"gate", "yard"}
            assert [c.id for c in cameras.configs()] == ["gate", "yard"]
            assert site.resolved[-1] == {("gate", "anyone"), ("yard", "anyone")}  # dock's alerts resolve
            assert site.announced == 1

            # gate changed: restarted with a new worker and a new sampler; yard untouched
            slower = site.camera("gate", interval_s=5.0)
            change = await live.cameras_changed([slower, yard])
            await settled()
            assert (change.added, change.removed, change.restarted) == ([], [], ["gate"])
            assert site.running == {"gate": 1, "dock": 0, "yard": 1}
            assert cameras.workers["gate"] is not gate_worker and cameras.workers["gate"].camera == slower
            assert loops.problem() is None

            # the same cameras again: nothing restarts, MQTT still says it all again
            before = dict(cameras.workers)
            change = await live.cameras_changed([slower, yard])
            assert (change.added, change.removed, change.restarted) == ([], [], [])
            assert cameras.workers == before and site.announced == 3
        assert site.running == {"gate": 0, "dock": 0, "yard": 0}  # the loops stopped every sampler

    asyncio.run(main())


def test_a_shard_takes_only_its_own_cameras_from_an_edit(tmp_path: Path) -> None:
    site = Site(tmp_path, shard="1/2")
    configs = [site.camera(f"cam{index}") for index in range(8)]
    mine = [c.id for c in site.shard.select(configs)]
    assert 0 < len(mine) < len(configs)
    rules = site.rules("anyone", [c.id for c in configs], configs)

    async def main() -> None:
        async with Cameras([]) as cameras, Loops() as loops:
            live = site.live(cameras, loops, rules, [])
            change = await live.cameras_changed(configs)
            await settled()
            assert change.added == sorted(mine) and set(cameras.workers) == set(mine)
            assert {c for c, n in site.running.items() if n} == set(mine)
            assert live.rules_watch.cameras == configs  # rules are still checked against every camera

    asyncio.run(main())


def test_a_new_rule_set_goes_live_and_what_left_resolves(tmp_path: Path) -> None:
    site = Site(tmp_path)
    gate, dock = site.camera("gate"), site.camera("dock")
    rules = site.rules("anyone", ["gate", "dock"], [gate, dock])

    async def main() -> None:
        async with Cameras([gate, dock]) as cameras, Loops() as loops:
            live = site.live(cameras, loops, rules, [gate, dock])
            (site.rules_dir / "rules.toml").write_text(RULES.format(id="intruder", cameras='"gate"'), encoding="utf-8")
            narrower = load_rules(site.rules_dir, [gate, dock])
            await live.rules_changed(narrower)
            assert rules.current is narrower
            assert [r.id for r in rules.for_camera(gate)] == ["intruder"] and rules.for_camera(dock) == []
            assert site.resolved == [{("gate", "intruder")}]  # "anyone" went: its open alerts resolve
            assert site.announced == 1

    asyncio.run(main())
