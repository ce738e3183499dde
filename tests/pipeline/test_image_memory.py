"""Memory under concurrency: many uploads of a near-limit image (a few KB of PNG that decodes to 6000x6000,
108 MB) while the model is busy. Each picture is shrunk to the model's size as soon as it is decoded and
held within `web.image_memory_mb` (more wait, then 503), so the process grows by about the budget, not
by the number of requests (before: 32 such uploads took it from 550 MB to 3.2 GB). Over a real socket;
the process's resident memory is sampled while it runs."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from support.helpers import wait_for
from support.web import LiveServer, Site

from streamwatch.config import WebConfig
from streamwatch.inference.types import Answer, AnswerKind
from streamwatch.ingest.budget import MemoryBudget, NoRoom, trim_memory
from streamwatch.ingest.preprocess import fit_longest_side
from streamwatch.web.app import create_app

SIDE = 6000
UPLOADS = 16
BUDGET_MB = 512


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


class Sampler:
    """The peak of this process's resident memory, sampled every 10 ms."""

    def __init__(self) -> None:
        self.peak = resident_mb()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            self.peak = max(self.peak, resident_mb())
            time.sleep(0.01)

    def stop(self) -> float:
        self.running = False
        self.thread.join(5)
        return self.peak


class BusySite(Site):
    """The model is busy until released: every answered picture waits meanwhile, as under load."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.release = threading.Event()
        self.waiting = 0
        self.sizes: list[tuple[int, int]] = []

    async def ask(self, image: Image.Image, question: str, kind: AnswerKind) -> Answer:
        self.waiting += 1
        self.sizes.append(image.size)
        while not self.release.is_set():  # no thread held: decoding needs the executor's threads
            await asyncio.sleep(0.05)
        return await super().ask(image, question, kind)


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[tuple[BusySite, LiveServer]]:
    site = BusySite(tmp_path)
    server = LiveServer(create_app(site, WebConfig(image_memory_mb=BUDGET_MB)))
    yield site, server
    site.release.set()
    server.stop()
    site.close()


def near_limit_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (90, 140, 80)).save(buffer, "PNG")
    trim_memory(10**9)  # the test's own 108 MB picture, given back before the baseline
    return buffer.getvalue()


def test_concurrent_near_limit_uploads_stay_within_the_budget(busy: tuple[BusySite, LiveServer]) -> None:
    site, server = busy
    png = near_limit_png()
    csrf = httpx.get(f"http://127.0.0.1:{server.port}/ask").text.split('name="csrf" value="')[1].split('"')[0]
    statuses: list[int] = []

    def upload() -> None:
        files = {"image": ("big.png", png, "image/png")}
        data = {"question": "Is the gate open? Answer yes or no.", "csrf": csrf}
        response = httpx.post(f"http://127.0.0.1:{server.port}/api/ask", files=files, data=data, timeout=180)
        statuses.append(response.status_code)

    baseline = resident_mb()
    sampler = Sampler()
    threads = [threading.Thread(target=upload, daemon=True) for _ in range(UPLOADS)]
    for thread in threads:
        thread.start()
    wait_for(lambda: site.waiting + len(statuses) == UPLOADS, 150, f"every upload decoded (or refused): {statuses}")
    site.release.set()
    for thread in threads:
        thread.join(120)
    peak = sampler.stop()
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 503}, statuses
    assert all(max(size) == 1280 for size in site.sizes)  # shrunk to the model's side as soon as decoded
    # all of them waited for the model at once: without the budget that is UPLOADS x 108 MB (1.7 GB)
    assert peak - baseline < BUDGET_MB + 200, (baseline, peak)
    after = resident_mb()  # all answered: the pictures and the decoders' heap are given back
    assert after - baseline < 200, (baseline, after)


def test_shrinking_early_gives_the_model_the_same_pixels() -> None:
    """The model resizes to max_image_side itself; doing it at decode gives it exactly the same image."""
    image = Image.effect_noise((3000, 1700), 60).convert("RGB")
    once = fit_longest_side(image, 1280)
    assert fit_longest_side(once, 1280).tobytes() == once.tobytes() and once.size == (1280, 725)


def test_the_budget_waits_for_room_refuses_after_the_wait_and_never_fits_too_large() -> None:
    async def scenario() -> None:
        budget = MemoryBudget(100, "web.image_memory_mb")
        with pytest.raises(NoRoom) as never:
            async with budget.reserved(101, 1.0):
                pass
        assert never.value.too_large and "more than web.image_memory_mb allows" in str(never.value)
        async with budget.reserved(80, 1.0) as first:
            with pytest.raises(NoRoom) as full:  # 80 + 30 > 100: waits, then gives up
                async with budget.reserved(30, 0.2):
                    pass
            assert not full.value.too_large and "retry later" in str(full.value)
            later = asyncio.create_task(_hold(budget, 30))
            await asyncio.sleep(0.05)
            assert not later.done()  # waiting for room
            await first.shrink(10)  # decoded and shrunk: room for the next
            await asyncio.wait_for(later, 5)
            assert budget.used == 10
        assert budget.used == 0

    asyncio.run(scenario())


async def _hold(budget: MemoryBudget, size: int) -> None:
    async with budget.reserved(size, 5.0):
        pass


def test_serve_holds_concurrent_near_limit_images_within_its_budget(tiny_glm4v: Path) -> None:
    """`serve` with the model busy (its queue not started: every request waits): 16 requests of a 6000x6000
    PNG take about the budget, not 16 x 108 MB (before: 0.5 to 2.5 GB)."""
    import base64

    from streamwatch.config import ServeConfig
    from streamwatch.inference.backends.transformers import TransformersBackend
    from streamwatch.inference.queue import InferenceQueue
    from streamwatch.inference.watchdog import ModelWatchdog
    from streamwatch.serve.api import create_openai_app

    backend = TransformersBackend.load(str(tiny_glm4v), device="cpu")
    queue = InferenceQueue(backend, max_batch=2, max_wait_s=0.01)  # never started: the model is busy
    limits = backend.prompt_limits(max_chars=2000, max_tokens=64, max_new_tokens=16)
    config = ServeConfig(image_memory_mb=BUDGET_MB)
    app = create_openai_app(
        queue, config, "tiny", default_tokens=16, timeout_s=60, limits=limits, watchdog=ModelWatchdog(queue, 600)
    )
    server = LiveServer(app)
    uri = "data:image/png;base64," + base64.b64encode(near_limit_png()).decode()
    content = [
        {"type": "text", "text": "Is it open? Answer yes or no."},
        {"type": "image_url", "image_url": {"url": uri}},
    ]
    statuses: list[int] = []

    def request() -> None:
        body = {"messages": [{"role": "user", "content": content}], "max_tokens": 1}
        response = httpx.post(f"http://127.0.0.1:{server.port}/v1/chat/completions", json=body, timeout=180)
        statuses.append(response.status_code)

    baseline = resident_mb()
    sampler = Sampler()
    threads = [threading.Thread(target=request, daemon=True) for _ in range(UPLOADS)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: queue.stats().pending + len(statuses) == UPLOADS, 150, "every request decoded (or refused)")
        peak = sampler.stop()
        assert queue.stats().pending >= 1 and set(statuses) <= {503}, statuses
        assert peak - baseline < BUDGET_MB + 200, (baseline, peak)
    finally:
        sampler.running = False
        queue.stop(drain=False, timeout=5)  # the waiting requests are dropped (503)
        for thread in threads:
            thread.join(60)
        server.stop()
    assert set(statuses) == {503}
