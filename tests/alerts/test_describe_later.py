"""An alert never waits for its description: the open event is committed and delivered at once, the
`describe` answer follows as an update of the same alert (or the open event says it did not come:
model slow, down or stopping, too many at once, a restart); a notification target may wait for it
up to `wait_for_description_s`. Against real SQLite files and a real webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from support.notify import Webhook, events_and_target

from streamwatch.alerts import recorder as pipeline_module
from streamwatch.alerts.recorder import AlertPipeline
from streamwatch.config import CameraConfig, NotifyConfig
from streamwatch.inference.types import Answer
from streamwatch.outputs.base import Output
from streamwatch.rules.model import Rule
from streamwatch.store.db import Database
from streamwatch.store.events import EventFilter, EventStore, description_of
from streamwatch.store.message import Message
from streamwatch.store.models import Event

RULE = Rule(id="fence", title="Fence", question="Anyone? Answer yes or no.", describe="Describe them.")
CAMERA = CameraConfig(id="gate", url="a.mp4", name="Gate", tags=["perimeter"])
YES, NO = Answer("yes", 0.9, 0.1, 1, "m"), Answer("no", 0.1, 0.1, 1, "m")
IMAGE = Image.new("RGB", (64, 36))


class Recorder(Output):
    """An output that keeps what each committed event became (its kind and description)."""

    name, check = "recorder", "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    def event_messages(self, event: Event, snapshot_jpeg: bytes | None, media_dir: Path | None) -> list[Message]:
        self.seen.append((event.kind, event.description))
        return []

    def running(self) -> Any:
        return contextlib.nullcontext()

    def notify(self) -> None:
        pass

    def problem(self) -> str | None:
        return None


class SlowModel:
    """A describe that answers only when released (or never, or fails)."""

    def __init__(self, text: str | None = "a person in red") -> None:
        self.release = asyncio.Event()
        self.asked = asyncio.Event()
        self.text = text

    async def __call__(self, _camera: CameraConfig, _rule: Rule, _image: Image.Image) -> str | None:
        self.asked.set()
        await self.release.wait()
        return self.text


def store_in(tmp_path: Path) -> EventStore:
    return EventStore(Database.open(f"sqlite:///{tmp_path / 'events.db'}"), tmp_path / "snapshots")


def test_the_open_event_goes_out_before_the_description_which_follows_as_an_update(tmp_path: Path) -> None:
    store, model, recorder = store_in(tmp_path), SlowModel(), Recorder()

    async def scenario() -> str:
        pipeline = AlertPipeline(store, [recorder], describe=model)
        async with pipeline.running():
            opened = await pipeline.handle(CAMERA, RULE, "Anyone?", YES, True, IMAGE, 1.0)
            assert opened is not None  # handle returned while the model has not answered
            await model.asked.wait()
            assert recorder.seen == [("open", None)]
            assert description_of(store.db, opened.uid) == ("pending", None)
            model.release.set()
            while len(recorder.seen) < 2:
                await asyncio.sleep(0.01)
        return opened.uid

    uid = asyncio.run(scenario())
    assert recorder.seen == [("open", None), ("update", "a person in red")]
    assert description_of(store.db, uid) == ("done", "a person in red")
    update = store.list(EventFilter(kind="update"))[0]
    assert update.alert_id == uid and update.answer == "yes" and update.camera == "gate"


@pytest.mark.parametrize("case", ["model down", "resolved first", "stopping", "too many"])
def test_a_description_that_does_not_come_leaves_the_alert_out_and_says_so(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, recorder = store_in(tmp_path), Recorder()
    model = SlowModel(text=None if case == "model down" else "late words")
    monkeypatch.setattr(pipeline_module, "DESCRIBE_DRAIN_S", 0.2)
    if case == "too many":
        monkeypatch.setattr(pipeline_module, "MAX_DESCRIBING", 0)

    async def scenario() -> str:
        pipeline = AlertPipeline(store, [recorder], describe=model)
        async with pipeline.running():
            opened = await pipeline.handle(CAMERA, RULE, "Anyone?", YES, True, IMAGE, 1.0)
            assert opened is not None
            if case == "resolved first":
                assert await pipeline.handle(CAMERA, RULE, "Anyone?", NO, False, IMAGE, 100.0) is not None
            if case in ("model down", "resolved first"):
                model.release.set()
                while description_of(store.db, opened.uid)[0] == "pending":
                    await asyncio.sleep(0.01)
        return opened.uid  # "stopping": the model never answers; leaving drains, then gives up

    uid = asyncio.run(scenario())
    expected = {
        "model down": ("none", None),
        "resolved first": ("done", "late words"),
        "stopping": ("none", None),
        "too many": ("none", None),
    }
    assert description_of(store.db, uid) == expected[case]
    assert "update" not in [kind for kind, _text in recorder.seen]  # no update without words, or after a resolve
    assert recorder.seen[0] == ("open", None)


def test_descriptions_pending_at_a_stop_are_settled_at_the_next_start(tmp_path: Path) -> None:
    store = store_in(tmp_path)

    async def crash() -> str:  # the process dies while the model generates: no drain, no marking
        pipeline = AlertPipeline(store, describe=SlowModel())
        opened = await pipeline.handle(CAMERA, RULE, "Anyone?", YES, True, IMAGE, 1.0)
        assert opened is not None
        return opened.uid

    loop = asyncio.new_event_loop()
    uid = loop.run_until_complete(crash())  # the task is left behind with its loop, as after a SIGKILL
    assert description_of(store.db, uid) == ("pending", None)

    async def restart() -> None:
        await AlertPipeline(store_in(tmp_path)).restore(set(), lambda _camera: True)

    asyncio.run(restart())
    assert description_of(store.db, uid) == ("none", None)
    loop.run_until_complete(put_away())  # the dead process's leftovers
    loop.close()


async def put_away() -> None:
    left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)


@pytest.mark.parametrize("answers", [True, False])
def test_a_target_may_wait_for_the_description(tmp_path: Path, webhook: Webhook, answers: bool) -> None:
    webhook.start()
    config = NotifyConfig(name="ops", urls=[webhook.url], wait_for_description_s=2 if not answers else 60)
    store, target, _metrics = events_and_target(tmp_path, config)
    model = SlowModel(text="a person in red" if answers else None)

    async def scenario() -> None:
        pipeline = AlertPipeline(store, [target], describe=model)
        async with target.running(), pipeline.running():
            await pipeline.handle(CAMERA, RULE, "Anyone?", YES, True, IMAGE, 1.0)
            await model.asked.wait()
            assert not webhook.received  # waiting for the words, this target only
            if answers:
                model.release.set()
            async with asyncio.timeout(60):
                while not webhook.received:
                    await asyncio.sleep(0.05)

    asyncio.run(scenario())
    body = webhook.received[0]["message"]
    if answers:
        assert "a person in red" in body.split("\n")[3], body  # after the answer line
    else:
        assert "Description: none (the model did not answer in time)" in body
