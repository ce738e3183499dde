"""A model that stops answering never looks healthy: the watchdog turns "requests waiting, no model call
finishing" into a readiness failure with the reason (service /readyz, serve /health), logged at ERROR,
and clears when answers flow again.

The stuck model is a backend double that blocks until released (the queue and the real backends have
their own tests); the queue, watchdog, web app and service around it are the real ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.helpers import REPO, get_json, random_image, wait_for
from support.service import Running, SceneBackend, write_site

from streamwatch.config import ServeConfig, load_settings
from streamwatch.inference.backends.base import YesNo
from streamwatch.inference.limits import PromptLimits
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.types import Prompt, Request
from streamwatch.inference.watchdog import ModelWatchdog
from streamwatch.serve.api import create_openai_app


class StuckBackend(SceneBackend):
    """Answers like SceneBackend once `release` is set; until then every model call hangs."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def score_yes_no(self, prompts: Sequence[Prompt]) -> list[YesNo]:
        self.calls += 1
        self.release.wait()
        return super().score_yes_no(prompts)


def test_requests_waiting_on_a_stuck_model_are_a_stall_until_answers_flow(caplog: pytest.LogCaptureFixture) -> None:
    backend = StuckBackend()
    queue = InferenceQueue(backend, max_batch=2, max_wait_s=0.01)
    watchdog = ModelWatchdog(queue, stall_timeout_s=0.3)
    queue.start()
    try:
        assert watchdog.problem() is None  # idle is not stalled
        futures = [queue.submit(Request(random_image(index), "Is it day? Answer yes or no.")) for index in range(3)]
        with caplog.at_level(logging.INFO, logger="streamwatch.inference.watchdog"):
            wait_for(lambda: watchdog.problem() is not None, 20, "the stall to be noticed")
            reason = watchdog.problem()
            assert reason is not None and "no model call finished for" in reason and "3 requests wait" in reason
            backend.release.set()
            for future in futures:
                future.result(timeout=20)
            assert watchdog.problem() is None
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "cameras are not being watched" in errors[0].getMessage()  # said once
        assert "model: answering again" in caplog.text
    finally:
        backend.release.set()
        queue.stop()


def test_a_slow_but_moving_queue_is_not_a_stall() -> None:
    backend = StuckBackend()
    backend.release.set()
    queue = InferenceQueue(backend, max_batch=1, max_wait_s=0.0)
    watchdog = ModelWatchdog(queue, stall_timeout_s=0.3)
    queue.start()
    try:
        futures = [queue.submit(Request(random_image(index), "Is it day?")) for index in range(20)]
        for future in futures:
            future.result(timeout=20)
            assert watchdog.problem() is None or queue.stats().answered == 0
    finally:
        queue.stop()


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    return get_json(f"http://127.0.0.1:{port}/readyz")


def test_the_service_says_it_is_not_ready_while_its_model_hangs(tmp_path: Path) -> None:
    config = write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), None)
    config.write_text(
        config.read_text().replace(
            'id = "test/scene-double"', 'id = "test/scene-double"\nstall_timeout_s = 1\nrequest_timeout_s = 600'
        )
    )
    settings = load_settings(config)
    backend = StuckBackend()
    running = Running(settings, backend_factory=lambda _s: backend)
    try:
        wait_for(lambda: readyz(settings.web.port)[0] == 503, 30, "readiness to fail")
        _status, body = readyz(settings.web.port)
        reasons = body["reasons"]
        assert isinstance(reasons, dict) and "no model call finished for" in reasons["model"]
        assert body["checks"] == {
            "model": False,
            "database": True,
            "loops": True,
            "rules": True,
            "config": True,
            "shadow": True,
        }
        assert body["status"] == "not ready"
        backend.release.set()
        wait_for(lambda: readyz(settings.web.port)[0] == 200, 30, "readiness to come back")
        wait_for(lambda: len(running.decisions) >= 1, 30, "decisions after the model came back")
    finally:
        backend.release.set()
        running.stop()


def test_the_service_stops_in_bounded_time_while_a_model_call_hangs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), None)
    config.write_text(
        config.read_text().replace(
            'id = "test/scene-double"', 'id = "test/scene-double"\nstall_timeout_s = 1\nrequest_timeout_s = 2'
        )
    )
    backend = StuckBackend()
    running = Running(load_settings(config), backend_factory=lambda _s: backend)
    try:
        wait_for(lambda: backend.calls >= 1, 30, "a model call")
        with caplog.at_level(logging.ERROR, logger="streamwatch.inference.queue"):
            running.stop()  # asserts the service thread ended (within 60 s)
        assert "still inside a model call" in caplog.text
        assert not backend.closed  # never closed under a call that is still running
    finally:
        backend.release.set()


def test_serve_health_is_503_with_the_reason_while_the_model_hangs() -> None:
    backend = StuckBackend()
    queue = InferenceQueue(backend, max_batch=2, max_wait_s=0.01)
    queue.start()
    app = create_openai_app(
        queue,
        ServeConfig(),
        "stuck",
        default_tokens=16,
        timeout_s=600,
        limits=PromptLimits(2000),
        watchdog=ModelWatchdog(queue, 0.3),
    )
    try:
        with TestClient(app, base_url="http://127.0.0.1:8000") as client:
            assert client.get("/health").json()["status"] == "ok"
            queue.submit(Request(random_image(1), "Is it day?"))
            deadline = time.monotonic() + 20
            while (health := client.get("/health")).status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert health.status_code == 503 and health.json()["status"] == "stalled"
            assert "no model call finished" in health.json()["reason"]
            backend.release.set()
            wait_for(lambda: client.get("/health").status_code == 200, 20, "health to come back")
    finally:
        backend.release.set()
        queue.stop()
