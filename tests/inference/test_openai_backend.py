"""The OpenAI-compatible backend against a real `streamwatch serve` process, and against faulty servers."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from support.helpers import random_image, wait_for
from support.serve import FakeServer, ServeProcess, answer, reply

from streamwatch.config import RemoteConfig
from streamwatch.inference.backends.endpoints import NoServerError
from streamwatch.inference.backends.openai import OpenAIBackend, RemoteError, p_yes_from
from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.types import AnswerKind, Prompt, Request

QUESTION = "Is any person climbing the fence? Answer yes or no."


def remote(*urls: str, **options: Any) -> OpenAIBackend:
    return OpenAIBackend("tiny-glm4v", RemoteConfig(base_urls=list(urls), **options))


def as_sent(image: Image.Image) -> Image.Image:
    """The image the server decodes: the backend sends JPEG at quality 90."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@pytest.fixture(scope="module")
def server(tiny_glm4v: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve"), tiny_glm4v, api_key="key-0123456789abcdef") as process:
        yield process


def test_answers_equal_the_local_model_through_streamwatch_serve(server: ServeProcess, tiny_glm4v: Path) -> None:
    images = [random_image(60 + i) for i in range(4)]
    prompts = [Prompt(image, QUESTION) for image in images]
    backend = remote(server.url, api_key="key-0123456789abcdef")
    local = TransformersBackend.load(str(tiny_glm4v), device="cpu")
    try:
        got = [s.p_yes for s in backend.score_yes_no(prompts)]
        want = [s.p_yes for s in local.score_yes_no([Prompt(as_sent(i), QUESTION) for i in images])]
        assert got == pytest.approx(want, abs=1e-4)
        sent = [Prompt(as_sent(image), QUESTION) for image in images[:2]]
        assert backend.generate(prompts[:2], 5) == local.generate(sent, 5)
        # Through the queue, as the service uses it: a batch becomes concurrent requests.
        queue = InferenceQueue(backend, max_batch=4, max_wait_s=0.05)
        queue.start()
        futures = [queue.submit(Request(image, QUESTION, source=f"cam{i}")) for i, image in enumerate(images)]
        answers = [future.result(timeout=60) for future in futures]
        queue.stop()
        assert [a.confidence for a in answers] == pytest.approx(want, abs=1e-4)
        assert queue.stats().answered == 4
    finally:
        backend.close()


def test_several_frames_go_as_several_image_url_parts(server: ServeProcess, tiny_glm4v: Path) -> None:
    frames = [random_image(80 + i) for i in range(3)]
    backend = remote(server.url, api_key="key-0123456789abcdef")
    local = TransformersBackend.load(str(tiny_glm4v), device="cpu")
    try:
        (got,) = backend.score_yes_no([Prompt(frames[-1], QUESTION, tuple(frames[:-1]))])
        sent = [as_sent(f) for f in frames]
        (want,) = local.score_yes_no([Prompt(sent[-1], QUESTION, tuple(sent[:-1]))])
        (newest,) = local.score_yes_no([Prompt(sent[-1], QUESTION)])
        assert got.p_yes == pytest.approx(want.p_yes, abs=1e-4) and got.p_yes != pytest.approx(newest.p_yes, abs=1e-6)
    finally:
        backend.close()


def test_a_wrong_api_key_is_not_retried(server: ServeProcess) -> None:
    backend = remote(server.url, api_key="wrong", retries=3)
    with pytest.raises(RemoteError, match="HTTP 401: missing or wrong API key"):
        backend.score_yes_no([Prompt(random_image(1), QUESTION)])
    assert backend.endpoints.all[0].requests == 1
    backend.close()


def test_yes_no_from_logprobs_or_from_text() -> None:
    entries = [
        {"token": "Yes", "logprob": math.log(0.6)},
        {"token": " yes", "logprob": math.log(0.1)},
        {"token": "No", "logprob": math.log(0.2)},
        {"token": "Maybe", "logprob": math.log(0.1)},
    ]

    def choice(text: str, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        first: dict[str, Any] = answer(text, logprobs)["choices"][0]
        return first

    with_logprobs = choice("Yes", {"content": [entries[0] | {"top_logprobs": entries}]})
    assert p_yes_from(with_logprobs) == pytest.approx(0.7 / 0.9)  # "Yes" counted once though listed twice
    assert p_yes_from(choice("Yes, a person is climbing.")) == 1.0
    assert p_yes_from(choice("<|begin_of_box|>no<|end_of_box|>")) == 0.0
    with pytest.raises(RemoteError, match="neither yes nor no"):
        p_yes_from(choice("It is hard to say"))


def test_retries_after_5xx_and_malformed_replies() -> None:
    script = iter([500, "malformed", 200])

    def behaviour(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        step = next(script)
        assert body["max_tokens"] == 1 and body["logprobs"] is True
        if step == 500:
            reply(handler, 500, {"error": {"message": "boom"}})
        elif step == "malformed":
            reply(handler, 200, b"{not json")
        else:
            reply(handler, 200, answer("no"))

    with FakeServer(behaviour) as fake:
        backend = remote(fake.url, retries=2)
        assert backend.score_yes_no([Prompt(random_image(2), QUESTION)])[0].p_yes == 0.0
        assert fake.chats == 3
        backend.close()


def test_a_server_that_hangs_times_out_and_the_error_says_so() -> None:
    def behaviour(handler: BaseHTTPRequestHandler, _body: dict[str, Any]) -> None:
        time.sleep(60)
        reply(handler, 200, answer("yes"))

    with FakeServer(behaviour) as fake:
        backend = remote(fake.url, timeout_s=0.5, retries=1)
        started = time.monotonic()
        with pytest.raises(RemoteError, match=r"no answer after 2 attempt\(s\).*no reply within 0.5 s"):
            backend.generate([Prompt(random_image(3), "Describe.")], 4)
        assert time.monotonic() - started < 30  # gave up long before the server's minute
        backend.close()


def test_round_robin_breaker_and_health_checks() -> None:
    def good(handler: BaseHTTPRequestHandler, _body: dict[str, Any]) -> None:
        reply(handler, 200, answer("yes"))

    def broken(handler: BaseHTTPRequestHandler, _body: dict[str, Any]) -> None:
        reply(handler, 503, {"error": {"message": "overloaded"}})

    with FakeServer(good) as a, FakeServer(good) as b, FakeServer(broken) as c:
        backend = remote(a.url, b.url, retries=2, breaker_failures=2, breaker_reset_s=60, health_interval_s=0.2)
        prompts = [Prompt(random_image(4), QUESTION)] * 12
        assert all(s.p_yes == 1.0 for s in backend.score_yes_no(prompts[:4]))
        assert a.chats == 2 and b.chats == 2  # round-robin

        # A server that fails is retried elsewhere, then left alone once its breaker opens.
        mixed = remote(a.url, c.url, retries=2, breaker_failures=2, breaker_reset_s=60)
        assert all(s.p_yes == 1.0 for s in mixed.score_yes_no(prompts))
        assert c.chats >= 2 and mixed.endpoints.all[1].open_until > 0  # (concurrent requests may all reach c)
        failed_on_c = c.chats
        assert all(s.p_yes == 1.0 for s in mixed.score_yes_no(prompts))
        assert c.chats == failed_on_c  # breaker open: nothing more sent there

        # A failing health check takes a server out of rotation; all out fails at once.
        b.health = 503
        wait_for(lambda: not backend.endpoints.all[1].healthy, 5, "b marked unhealthy")
        before = b.chats
        backend.score_yes_no(prompts[:4])
        assert b.chats == before
        a.health = 503
        wait_for(lambda: not backend.endpoints.all[0].healthy, 5, "a marked unhealthy")
        with pytest.raises(NoServerError, match="health check failing"):
            backend.score_yes_no(prompts[:1])
        a.health = 200
        wait_for(lambda: backend.endpoints.all[0].healthy, 5, "a healthy again")
        assert backend.score_yes_no(prompts[:1])[0].p_yes == 1.0
        backend.close()
        mixed.close()


def test_the_queue_survives_a_remote_failure() -> None:
    def behaviour(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        text = body["messages"][0]["content"][1]["text"]
        reply(handler, 200, answer("perhaps" if "bad" in text else "yes"))

    with FakeServer(behaviour) as fake:
        backend = remote(fake.url, retries=0)
        queue = InferenceQueue(backend, max_batch=4, max_wait_s=0.05)
        queue.start()
        good = queue.submit(Request(random_image(5), QUESTION, source="a"))
        bad = queue.submit(Request(random_image(6), "bad question", source="b"))
        text = queue.submit(Request(random_image(7), "Describe.", AnswerKind.GENERATE, source="c"))
        assert good.result(timeout=30).confidence == 1.0
        assert text.result(timeout=30).text == "yes"
        with pytest.raises(RuntimeError, match="inference failed"):
            bad.result(timeout=30)
        queue.stop()
        backend.close()


def test_streamwatch_ask_with_the_openai_backend(server: ServeProcess, tiny_glm4v: Path, tmp_path: Path) -> None:
    image = random_image(70)
    image.save(tmp_path / "frame.png")
    config = tmp_path / "remote.toml"
    config.write_text(
        f'[model]\nbackend = "openai"\nid = "tiny-glm4v"\n\n[model.remote]\n'
        f'base_urls = ["{server.url}"]\napi_key = "${{TEST_MODEL_KEY}}"\n'
    )
    env = os.environ | {"TEST_MODEL_KEY": "key-0123456789abcdef"}
    command = [
        sys.executable,
        "-m",
        "streamwatch",
        "ask",
        str(tmp_path / "frame.png"),
        QUESTION,
        "-c",
        str(config),
        "--json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    want = TransformersBackend.load(str(tiny_glm4v), device="cpu").score_yes_no([Prompt(as_sent(image), QUESTION)])[0]
    assert got["model"] == "tiny-glm4v" and got["confidence"] == pytest.approx(want.p_yes, abs=1e-3)
    assert "key-0123456789abcdef" not in result.stdout + result.stderr
