"""A candidate adapter in shadow beside the live model (release/shadow.py) on the shipped demo model and
a real SQLite file: it is asked on the frames the live model answered, never alerts, keeps what it
would have opened (with the frame) and counts both models' openings on the same frames; one runs at a
time, a broken one is refused with the reason, the waiting frames are bounded, a run resumes after a
restart. Then from the running service's REST API and Jobs page."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from support.adapters import make_adapter
from support.demo_site import demo_site
from support.helpers import REPO, free_port, wait_for
from support.service import serving

from streamwatch.config import Settings, load_settings
from streamwatch.errors import ShadowRefused
from streamwatch.inference.backends.base import Backend
from streamwatch.inference.build import build_backend, load_backend
from streamwatch.inference.engine import Engine, Model
from streamwatch.inference.types import Answer, Prompt
from streamwatch.ingest.preprocess import crop_roi
from streamwatch.learning.release import shadow as shadow_module
from streamwatch.learning.release.shadow import CandidateShadow
from streamwatch.pipeline.decision import Decision
from streamwatch.rules.loader import load_rules
from streamwatch.rules.model import Rule
from streamwatch.store.db import Database
from streamwatch.store.shadow_runs import ShadowRuns
from streamwatch.tools.demo.dataset import demo_tasks, example

RULE = "solder-bridge"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("adapters")
    return make_adapter(folder / "identity", 0.0), make_adapter(folder / "harmful", 0.5)


def boards(count: int, seed: int) -> list[Image.Image]:
    (task,) = [t for t in demo_tasks(REPO / "rules") if t.rule.id == RULE]
    rng = np.random.default_rng(seed)
    return [Image.fromarray(example(task, rng, "yes" if i % 2 else "no").image) for i in range(count)]


class Live:
    """The live side as a sampler hands it over: the base model's answer to the rule on each frame."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.camera = next(c for c in settings.cameras if c.id == "line")
        self.rule: Rule = next(
            r for r in load_rules(settings.path(settings.rules_dir), settings.cameras).rules if r.id == RULE
        )
        self.backend = load_backend(settings)

    def decided(self, image: Image.Image, at: float = 0.0) -> Decision:
        question = self.rule.prompt(self.camera)
        (score,) = self.backend.score_yes_no([Prompt(crop_roi(image, self.rule.roi), question)])
        answer = Answer(score.text, score.p_yes, 0.0, 1, "demo")
        alert = self.rule.is_alert(score.text, score.p_yes)
        return Decision(self.camera, self.rule, question, answer, alert, at, 0, None, image)


def shadow_of(settings: Settings, database: Database, live: Backend) -> CandidateShadow:
    runs = ShadowRuns(database, settings.path(settings.storage.snapshot_dir))
    return CandidateShadow(settings, runs, load_backend, Engine(settings, Model(live)).limits_problem)


def test_a_candidate_in_shadow_says_what_it_would_alert_on_and_resumes_after_a_restart(
    tmp_path: Path, adapters: tuple[Path, Path]
) -> None:
    identity, harmful = adapters
    config, _store, _labels = demo_site(tmp_path)
    settings = load_settings(config)
    database = Database.open(f"sqlite:///{tmp_path / 'data' / 'streamwatch.db'}")
    live = Live(settings)
    frames = boards(6, seed=3)
    decided = [live.decided(frame) for frame in frames]

    async def feed(shadow: CandidateShadow, count: int) -> None:
        for index, (frame, item) in enumerate(zip(frames, decided, strict=True)):
            shadow.offer([dataclasses.replace(item, image=frame, frame_at=1000.0 + index)])
        await wait_for_async(lambda: sum(c["frames"] for c in shadow.counts().values()) >= count, "the candidate")

    async def main() -> None:
        shadow = shadow_of(settings, database, live.backend)
        async with shadow.running():
            # the identity adapter is the live model: the same answer on every frame, no alert of its own
            run = await shadow.start(adapter=identity, thresholds={}, job_id=None, by="tester")
            await feed(shadow, 6)
            counts = shadow.counts()[f"line/{RULE}"]
            assert counts["frames"] == 6 and counts["differ"] == 0
            assert counts["candidate_opens"] == counts["live_opens"]
            with pytest.raises(ShadowRefused, match="stop it first"):
                await shadow.start(adapter=harmful, thresholds={}, job_id=None, by="tester")
            stopped = await shadow.stop("tester")
            assert stopped.id == run.id and stopped.stop_reason == "stopped by tester"
            assert stopped.counts[f"line/{RULE}"]["frames"] == 6  # the counts stay with the run
            # a candidate that says yes at every P(yes): it would open on the first frame and stay open
            run = await shadow.start(adapter=harmful, thresholds={RULE: 0.0}, job_id="job-1", by="tester")
            await feed(shadow, 6)
            counts = shadow.counts()[f"line/{RULE}"]
            assert counts["candidate_yes"] == 6 and counts["candidate_opens"] == 1
            assert counts["differ"] == 6 - counts["live_yes"]
            (alert,) = shadow.runs.alerts(run.id)
            assert alert.rule == RULE and alert.camera == "line" and alert.live_p_yes == decided[0].answer.confidence
            snapshot = shadow.runs.snapshot(alert.id)
            assert snapshot is not None and snapshot.read_bytes()[:2] == b"\xff\xd8"
            # the live model never waits: past MAX_PENDING the oldest waiting frames are dropped and counted
            for _ in range(shadow_module.MAX_PENDING + 40):
                shadow.offer([dataclasses.replace(decided[0], frame_at=2000.0)])
            assert len(shadow._pending) <= shadow_module.MAX_PENDING
            await wait_for_async(lambda: shadow.dropped > 0 and not shadow._pending, "the queue to drain")

        # a restart: the run that was left running resumes with its counts and alerts
        again = shadow_of(settings, database, live.backend)
        async with again.running():
            assert again.run is not None and again.run.id == run.id and again.run.job_id == "job-1"
            assert again.counts()[f"line/{RULE}"]["candidate_opens"] == 1
            assert len(again.runs.alerts(run.id)) == 1
            await again.stop("tester")

        # a broken adapter is refused with the reason, and nothing runs
        broken = tmp_path / "broken"
        shutil.copytree(identity, broken)
        (broken / "adapter_config.json").write_text("{", encoding="utf-8")
        third = shadow_of(settings, database, live.backend)
        async with third.running():
            with pytest.raises(ShadowRefused, match=r"does not load.*adapter_config\.json"):
                await third.start(adapter=broken, thresholds={}, job_id=None, by="tester")
            assert third.run is None and third.status()["run"] is None

    try:
        asyncio.run(main())
    finally:
        live.backend.close()
        database.close()


async def wait_for_async(condition: object, what: str, timeout: float = 120) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


@pytest.fixture
def service(tmp_path: Path, adapters: tuple[Path, Path]) -> Iterator[tuple[httpx.Client, Path]]:
    """The demo with only the line camera, jobs on, and a finished fine-tune job whose adapter is the
    identity one (as a fine-tune leaves it: jobs.dir/ID/adapter)."""
    config, _store, _labels = demo_site(tmp_path)
    text = config.read_text(encoding="utf-8")
    text = text.replace("[mqtt]\nenabled = true", "[mqtt]\nenabled = false").replace(
        "port = 8080", f"port = {free_port()}"
    )
    for camera in ("yard", "aisle"):
        text = text.replace(f'id = "{camera}"\n', f'id = "{camera}"\nenabled = false\n')
    config.write_text(text, encoding="utf-8")
    settings = load_settings(config)
    job = settings.path(settings.jobs.dir) / "20261207-120000-abcd"
    shutil.copytree(adapters[0], job / "adapter")
    record = {
        "id": job.name,
        "kind": "finetune",
        "options": {},
        "state": "succeeded",
        "created_at": "2026-12-07T12:00:00+00:00",
    }
    (job / "job.json").write_text(json.dumps(record), encoding="utf-8")
    with serving(settings, build_backend) as client:
        yield client, job


def test_shadow_from_the_rest_api_and_the_jobs_page(service: tuple[httpx.Client, Path]) -> None:
    client, job = service
    assert client.get("/api/shadow").json()["run"] is None
    assert 'id="shadow-none"' in client.get("/jobs").text and "Run in shadow first" in client.get("/jobs").text
    refused = client.post("/api/jobs/20261207-120000-ffff/shadow", json={})
    assert refused.status_code == 422 and "no finished fine-tune job" in refused.json()["detail"]
    bad = client.post(f"/api/jobs/{job.name}/shadow", json={"thresholds": {RULE: 2}})
    assert bad.status_code == 422 and "thresholds" in json.dumps(bad.json()["detail"])
    started = client.post(f"/api/jobs/{job.name}/shadow", json={"thresholds": {RULE: 0.0}})
    assert started.status_code == 201, started.text
    run = started.json()
    assert run["job_id"] == job.name and run["thresholds"] == {RULE: 0.0} and "from" in run["by"]
    busy = client.post(f"/api/jobs/{job.name}/shadow", json={})
    assert busy.status_code == 409 and "stop it first" in busy.json()["detail"]

    def would_alert() -> bool:
        state = client.get("/api/shadow").json()
        return bool(state["alerts"]) and state["run"]["counts"].get(f"line/{RULE}", {}).get("frames", 0) >= 2

    wait_for(would_alert, 180, "a would-be alert on the line camera")
    state = client.get("/api/shadow").json()
    alert = state["alerts"][0]
    assert alert["rule"] == RULE and alert["camera"] == "line" and state["alerts_of"] == run["id"]
    picture = client.get(alert["snapshot"])
    assert picture.status_code == 200 and picture.content[:2] == b"\xff\xd8"
    page = client.get("/jobs").text
    assert 'id="shadow-run"' in page and f'data-key="line/{RULE}"' in page and 'id="shadow-alerts"' in page
    events = client.get("/api/events", params={"rule": RULE}).json()["items"]
    opened = [e for e in events if e["type"] == "open"]
    assert all(e["confidence"] >= 0.7 for e in opened)  # only the live model's alerts: the shadow never alerts
    stopped = client.post("/api/shadow/stop")
    assert stopped.status_code == 200 and stopped.json()["stopped_at"] is not None
    assert client.post("/api/shadow/stop").status_code == 409
    after = client.get("/jobs").text
    assert 'id="shadow-last"' in after and 'id="shadow-alerts"' in after  # the last run's alerts stay shown


def test_a_failing_candidate_is_reported_and_the_next_batch_tried(tmp_path: Path, adapters: tuple[Path, Path]) -> None:
    config, _store, _labels = demo_site(tmp_path)
    settings = load_settings(config)
    database = Database.open(f"sqlite:///{tmp_path / 'data' / 'streamwatch.db'}")
    live = Live(settings)
    frame = boards(1, seed=4)[0]
    item = live.decided(frame)

    async def main() -> None:
        shadow = shadow_of(settings, database, live.backend)
        async with shadow.running():
            await shadow.start(adapter=adapters[0], thresholds={}, job_id=None, by="tester")
            backend = shadow._backend
            assert backend is not None
            real = backend.score_yes_no

            def out_of_memory(prompts: object) -> object:
                raise RuntimeError("CUDA out of memory")

            backend.score_yes_no = out_of_memory  # type: ignore[method-assign, assignment]
            shadow.offer([dataclasses.replace(item, image=frame, frame_at=1.0)])
            await wait_for_async(lambda: shadow.problem() is not None, "the failure reported")
            assert "CUDA out of memory" in str(shadow.problem()) and shadow.status()["problem"] == shadow.problem()
            backend.score_yes_no = real  # type: ignore[method-assign]
            shadow.offer([dataclasses.replace(item, image=frame, frame_at=2.0)])
            await wait_for_async(lambda: shadow.problem() is None, "the next batch answered")
            assert shadow.counts()[f"line/{RULE}"]["frames"] == 1

    try:
        asyncio.run(main())
    finally:
        live.backend.close()
        database.close()
