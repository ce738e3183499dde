"""A new LoRA adapter applied without a restart: `streamwatch run` on the shipped demo model (the real
transformers backend) watches model.adapter; a new adapter is loaded beside the running model and swapped
in between batches, a broken one keeps the running model and says why (/readyz, metrics), a fixed one is
taken again. And the queue's swap itself: a batch inside the old backend finishes there, the old backend
is released only after it."""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from support.helpers import REPO, free_port, wait_for
from support.service import Running
from transformers import AutoModelForImageTextToText

from streamwatch.config import load_settings
from streamwatch.inference.backends.base import Backend, YesNo
from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.build import build_backend
from streamwatch.inference.engine import Engine, Model
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.reload import ModelReload, ModelState
from streamwatch.inference.types import AnswerKind, Prompt, Request
from streamwatch.learning.finetune.lora import add_lora, save_adapter
from streamwatch.learning.finetune.settings import LoraSettings
from streamwatch.tools.demo.dataset import demo_tasks, example

MODEL = REPO / "models" / "demo-glm4v"
QUESTION = "Is there a solder bridge between two pins of the chip? Answer yes or no."


def make_adapter(out: Path, seed: int) -> Path:
    """A LoRA adapter for the demo model whose weights change its answers (seeded random, not trained)."""
    model = AutoModelForImageTextToText.from_pretrained(MODEL)
    adapted = add_lora(model, LoraSettings(seed=seed))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    save_adapter(adapted, out)
    return out


def board() -> Image.Image:
    (task,) = [t for t in demo_tasks(REPO / "rules") if t.rule.id == "solder-bridge"]
    return Image.fromarray(example(task, np.random.default_rng(3), "yes").image)


def expected_p_yes(adapter: Path, image: Image.Image) -> float:
    """What the demo model with `adapter` answers, loaded on its own."""
    backend = TransformersBackend.load(str(MODEL), device="cpu", max_image_side=640, adapter=adapter)
    try:
        return backend.score_yes_no([Prompt(image, QUESTION)])[0].p_yes
    finally:
        backend.close()


def put(adapter: Path, into: Path) -> None:
    """The adapter's files copied over the watched directory's (as an operator deploys a new version)."""
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(adapter / name, into / name)


@pytest.mark.slow
def test_a_new_adapter_is_swapped_in_without_a_restart_and_a_broken_one_keeps_the_running_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first, second = make_adapter(tmp_path / "a", 1), make_adapter(tmp_path / "b", 2)
    picture = board()
    want_first, want_second = expected_p_yes(first, picture), expected_p_yes(second, picture)
    assert abs(want_first - want_second) > 1e-3  # the two adapters answer differently
    current = tmp_path / "adapters" / "current"  # a link to the folder in use: `current -> slot-a`
    (tmp_path / "adapters" / "slot-a").mkdir(parents=True)
    put(first, tmp_path / "adapters" / "slot-a")
    current.symlink_to("slot-a")
    (tmp_path / "rules").mkdir()
    shutil.copy(REPO / "rules" / "defect.toml", tmp_path / "rules" / "defect.toml")
    port = free_port()
    (tmp_path / "config.toml").write_text(
        textwrap.dedent(f"""
        rules_dir = "rules"
        [model]
        id = "{MODEL}"
        device = "cpu"
        max_image_side = 640
        adapter = "adapters/current"
        watch_s = 0.2
        [[cameras]]
        id = "line"
        url = "{REPO / "samples" / "line.mp4"}"
        sample_interval_s = 1.0
        tags = ["defect"]
        location = "line 2"
        [storage]
        database_url = "sqlite:///data/events.db"
        snapshot_dir = "data/snapshots"
        [web]
        port = {port}
        [mqtt]
        enabled = false
    """).lstrip(),
        encoding="utf-8",
    )
    running = Running(load_settings(tmp_path / "config.toml"), backend_factory=build_backend)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        page = client.get("/ask").text
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        png = io.BytesIO()
        picture.save(png, format="PNG")

        def asked() -> float:
            files = {"image": ("board.png", png.getvalue(), "image/png")}
            reply = client.post("/api/ask", files=files, data={"question": QUESTION, "csrf": csrf})
            assert reply.status_code == 200, reply.text
            return float(reply.json()["confidence"])

        def model() -> dict[str, Any]:
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text  # a reload, failed or not, never makes it unready
            return dict(ready.json()["model"])

        assert model()["adapter"] == str(current) and model()["reloads"] == 0
        assert asked() == pytest.approx(want_first, abs=1e-4)

        put(second, current)  # new files over the folder in use
        wait_for(lambda: model()["reloads"] == 1, 60, "the new adapter to be swapped in")
        assert asked() == pytest.approx(want_second, abs=1e-4)
        assert model()["reload_error"] is None

        (current / "adapter_model.safetensors").write_bytes(b"not safetensors")
        wait_for(lambda: model()["reload_failures"] == 1, 60, "the broken adapter to be tried")
        state = model()
        assert state["reloads"] == 1 and "cannot be applied to this model" in state["reload_error"]
        assert "adapters/current" in state["reload_error"]
        assert asked() == pytest.approx(want_second, abs=1e-4)  # the running model stayed
        metrics = client.get("/metrics").text
        assert "streamwatch_model_reload_failing 1.0" in metrics
        assert "streamwatch_model_reload_failures_total 1.0" in metrics
        rules_page = client.get("/rules").text  # the operator sees it where the rules and the model are
        assert "The latest model version could not be loaded; the previous one answers" in rules_page
        decided = len(running.decisions)
        wait_for(lambda: len(running.decisions) > decided + 2, 60, "the camera to be watched on")

        shutil.copytree(first, tmp_path / "adapters" / "slot-b")  # deployed by swapping the link
        (tmp_path / "adapters" / "next").symlink_to("slot-b")
        (tmp_path / "adapters" / "next").replace(current)
        wait_for(lambda: model()["reloads"] == 2, 60, "the adapter the link now names to be swapped in")
        assert model()["reload_error"] is None and asked() == pytest.approx(want_first, abs=1e-4)
        assert "streamwatch_model_reload_failing 0.0" in client.get("/metrics").text

        for item in (tmp_path / "adapters" / "slot-b").iterdir():  # emptied: a slot, the model alone
            shutil.rmtree(item) if item.is_dir() else item.unlink()
        wait_for(lambda: model()["reloads"] == 3, 60, "the emptied slot to be swapped in")
        assert model()["adapter"] is None  # and the log says the same as /readyz
        last = caplog.text.split("model reloaded: ")[-1].splitlines()[0]
        assert "without an adapter now answers" in last
    finally:
        client.close()
        running.stop()


class Gate(Backend):
    """Holds its first batch until `release` is set, so that a swap happens while a batch is inside it."""

    def __init__(self, name: str, p_yes: float) -> None:
        self.name, self.p_yes = name, p_yes
        self.entered, self.release = threading.Event(), threading.Event()
        self.closed = False

    def score_yes_no(self, prompts: Sequence[Prompt]) -> list[YesNo]:
        self.entered.set()
        self.release.wait(30)
        return [YesNo(self.p_yes) for _ in prompts]

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        return ["-" for _ in prompts]

    def close(self) -> None:
        self.closed = True


def test_a_swap_lets_the_batch_inside_the_old_backend_finish_there_and_releases_it_after() -> None:
    old, new = Gate("old", 0.1), Gate("new", 0.9)
    new.release.set()
    queue = InferenceQueue(old, max_batch=1, max_wait_s=0.0, workers=2)  # one stays free for the new backend
    queue.start()
    try:
        image = Image.new("RGB", (8, 8))
        first = queue.submit(Request(image, "q?", AnswerKind.YES_NO, source="a"))
        assert old.entered.wait(10)
        assert queue.swap(new) is old
        second = queue.submit(Request(image, "q?", AnswerKind.YES_NO, source="b"))
        assert second.result(10).confidence == 0.9 and second.result().model == "new"
        assert not queue.wait_unused(old, 0.05)  # its batch is still inside
        old.release.set()
        assert queue.wait_unused(old, 10)
        assert first.result(10).confidence == 0.1 and first.result().model == "old"
    finally:
        old.release.set()
        queue.stop()


def test_an_adapter_handed_over_is_loaded_once_whether_the_folder_is_watched_or_not(tmp_path: Path) -> None:
    """ModelReload.now (a release job ended) loads what the slot holds at once; the watch, polled after,
    does not load the same files again, and still sees a later edit of its own."""
    slot = tmp_path / "slot"
    slot.mkdir()
    (tmp_path / "config.toml").write_text(
        f'[model]\nid = "{MODEL}"\nadapter = "slot"\nwatch_s = 1\n[web]\nenabled = false\n[mqtt]\nenabled = false\n',
        encoding="utf-8",
    )
    settings = load_settings(tmp_path / "config.toml")
    loads: list[str] = []

    def load(_settings: object) -> Backend:
        backend = Gate(f"v{len(loads) + 1}", 0.5)
        backend.release.set()
        loads.append(backend.name)
        return backend

    first = Gate("v0", 0.5)
    first.release.set()
    engine = Engine(settings, Model(first))
    reload = ModelReload(settings, engine, load, ModelState(engine.model, 0.0))

    async def main() -> None:
        (slot / "adapter_config.json").write_text('{"marker": 1}', encoding="utf-8")
        (slot / "adapter_model.safetensors").write_bytes(b"1")
        await reload.now()
        assert loads == ["v1"] and engine.model.backend.name == "v1" and first.closed
        for _ in range(3):
            await reload.step()
        await reload.now()
        assert loads == ["v1"]  # the same files: not loaded twice
        (slot / "adapter_model.safetensors").write_bytes(b"22")  # an operator's copy: the watch takes it
        await reload.step()
        await reload.step()
        assert loads == ["v1", "v2"] and engine.model.backend.name == "v2"

    asyncio.run(main())
