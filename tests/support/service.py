"""`streamwatch run`'s Service in a thread of its own, on a backend double that sees the synthetic scene
(its answer depends on the frame: "yes" while the walking figure is right of centre). The real backend
is tested in test_transformers_backend.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from streamwatch.app.service import Service
from streamwatch.config import Settings
from streamwatch.inference.backends.base import Backend, YesNo
from streamwatch.inference.types import Prompt
from streamwatch.pipeline.decision import Decision
from support.helpers import free_port, wait_for


def figure_x(image: Image.Image) -> float | None:
    """Where the walking figure of the synthetic scene is, 0 (left) .. 1 (right); None if not in sight."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    red = (pixels[..., 0] > 140) & (pixels[..., 1] < 90) & (pixels[..., 2] < 90)
    columns = np.nonzero(red.any(axis=0))[0]
    return float(columns.mean()) / image.width if columns.size else None


def figure_on_the_right(image: Image.Image) -> bool:
    x = figure_x(image)
    return x is not None and x > 0.5


class SceneBackend(Backend):
    """P(yes) 0.95 when the figure is right of centre, else 0.05; describes what it sees."""

    name = "scene-double"

    def score_yes_no(self, prompts: Sequence[Prompt]) -> list[YesNo]:
        return [YesNo(0.95 if figure_on_the_right(p.image) else 0.05) for p in prompts]

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        return ["A person in red walks along the fence." for _ in prompts]


RULES = """
[[rules]]
id = "right-side"
title = "Person on the right side of the fence"
severity = "critical"
cameras = ["tag:perimeter"]
question = "Is a person standing at the right side of {location}? Answer yes or no."
threshold = 0.5
confirm = { n = 2, m = 2 }
cooldown_s = 0
describe = "Describe the person in one sentence."
"""


def write_site(folder: Path, camera_url: str, mqtt_port: int | None) -> Path:
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "perimeter.toml").write_text(RULES, encoding="utf-8")
    mqtt = f"host = '127.0.0.1'\nport = {mqtt_port}\n" if mqtt_port else "enabled = false\n"
    config = textwrap.dedent(f"""
        [model]
        id = "test/scene-double"
        [[cameras]]
        id = "gate"
        name = "Gate"
        url = "{camera_url}"
        sample_interval_s = 1
        tags = ["perimeter"]
        location = "the fence"
        [storage]
        database_url = "sqlite:///data/events.db"
        snapshot_dir = "data/snapshots"
        [web]
        port = {free_port()}
        [mqtt]
        topic_prefix = "sw"
        home_assistant_discovery = true
    """).lstrip()
    (folder / "config.toml").write_text(config + mqtt, encoding="utf-8")
    return folder / "config.toml"


NO_IMAGE = Image.new("RGB", (1, 1))


class Recorder:
    """A decision sink that keeps every decision, without its pictures (a test reads the rest)."""

    name = "the test's record"

    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    async def take(self, decisions: Sequence[Decision]) -> None:
        self.decisions += [dataclasses.replace(d, image=NO_IMAGE, window=()) for d in decisions]


class Running:
    """The service on its own event loop in a thread, as `streamwatch run` would run it."""

    def __init__(self, settings: Settings, backend_factory: Callable[[Settings], Backend] | None = None) -> None:
        recorder = Recorder()
        self.decisions = recorder.decisions
        factory = backend_factory or (lambda _s: SceneBackend())
        self.service = Service(settings, backend_factory=factory, sinks=[recorder])
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.service.started.is_set(), 30, "the service to start")

    def _run(self) -> None:
        self.loop.run_until_complete(self.service.run(stop=self.stop_event))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(60)
        assert not self.thread.is_alive()


MOTION_RULE = """
[[rules]]
id = "walking-right"
title = "Person walking right"
cameras = ["gate"]
question = "Is the person walking to the right? Answer yes or no."
frames = 3
span_s = 1
confirm = { n = 2, m = 2 }
cooldown_s = 0
"""


class MotionBackend(SceneBackend):
    """Over several frames: P(yes) 0.95 when the figure moved right from the oldest frame to the newest
    (it walks right, then the clip starts over); records how many images each prompt had, and when."""

    name = "motion-double"

    def __init__(self) -> None:
        self.prompts: list[tuple[int, str]] = []  # (images, question)

    def score_yes_no(self, prompts: Sequence[Prompt]) -> list[YesNo]:
        answers = []
        for prompt in prompts:
            self.prompts.append((len(prompt.images), prompt.question))
            first, last = figure_x(prompt.images[0]), figure_x(prompt.images[-1])
            moved = first is not None and last is not None and last - first > 0.02
            answers.append(YesNo(0.95 if moved else 0.05))
        return answers


class FlagBackend(Backend):
    """P(yes) 0.95 while the flag file exists, else 0.05: the test decides when a condition holds."""

    name = "flag-double"

    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def score_yes_no(self, prompts: Sequence[Prompt]) -> list[YesNo]:
        return [YesNo(0.95 if self.flag.exists() else 0.05) for _ in prompts]

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        return ["-" for _ in prompts]


@contextlib.contextmanager
def serving(settings: Settings, backend_factory: Callable[[Settings], Backend]) -> Iterator[httpx.Client]:
    """The service running on `settings` and a web client of it (web_client); both stopped after."""
    running = Running(settings, backend_factory)
    try:
        client = web_client(settings)
        try:
            yield client
        finally:
            client.close()
    finally:
        running.stop()


def web_client(settings: Settings, page: str = "/jobs") -> httpx.Client:
    """A client of the running service's web UI, with the CSRF token `page` hands out as its header."""
    client = httpx.Client(base_url=f"http://127.0.0.1:{settings.web.port}", timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get(page).text)
    assert token is not None, f"no CSRF token on {page}"
    client.headers["X-CSRF-Token"] = token.group(1)
    return client
