"""`streamwatch serve`: the engine behind an OpenAI-compatible API, as a real process."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from support.helpers import random_image
from support.serve import FakeServer, ServeProcess, chat, data_uri, reply

from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.types import Prompt

QUESTION = "Is any person climbing the fence? Answer yes or no."


@pytest.fixture(scope="module")
def server(tiny_glm4v: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve"), tiny_glm4v, extra="max_tokens = 64\n") as process:
        yield process


def post(server: ServeProcess, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/chat/completions", json=body, timeout=60, **kwargs)


def test_models_and_health(server: ServeProcess) -> None:
    models = httpx.get(f"{server.url}/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny-glm4v"]
    health = httpx.get(server.url.removesuffix("/v1") + "/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny-glm4v"


def test_yes_no_with_logprobs_is_the_engines_yes_no_score(server: ServeProcess, tiny_glm4v: Path) -> None:
    image = random_image(50)
    uri = data_uri(image, "PNG")  # lossless: the server sees exactly this image
    response = post(server, chat(uri, QUESTION, max_tokens=1, logprobs=True, top_logprobs=5))
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    first = choice["logprobs"]["content"][0]
    p = {entry["token"]: math.exp(entry["logprob"]) for entry in first["top_logprobs"]}
    assert set(p) == {"yes", "no"} and p["yes"] + p["no"] == pytest.approx(1.0)
    assert choice["message"]["content"] == first["token"] == max(p, key=p.__getitem__)
    local = TransformersBackend.load(str(tiny_glm4v), device="cpu").score_yes_no([Prompt(image, QUESTION)])[0]
    assert p["yes"] == pytest.approx(local.p_yes, abs=1e-4)


def test_generation_and_streaming(server: ServeProcess) -> None:
    uri = data_uri(random_image(51))
    plain = post(server, chat(uri, "Describe the scene.", max_tokens=6)).json()
    assert plain["object"] == "chat.completion" and isinstance(plain["choices"][0]["message"]["content"], str)
    assert plain["choices"][0]["logprobs"] is None and plain["model"] == "tiny-glm4v"
    streamed = post(server, chat(uri, "Describe the scene.", max_tokens=6, stream=True))
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["delta"]["content"] == plain["choices"][0]["message"]["content"]  # greedy
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_image_urls_are_fetched_only_when_allowed(server: ServeProcess, tiny_glm4v: Path, tmp_path: Path) -> None:
    png = base64.b64decode(data_uri(random_image(52), "PNG").split(",", 1)[1])

    def behaviour(handler: BaseHTTPRequestHandler, _body: dict[str, Any]) -> None:
        reply(handler, 200, png)

    with FakeServer(behaviour) as images:
        url = images.url + "/frame.png"
        off = post(server, chat(url, QUESTION, max_tokens=1, logprobs=True))  # the default: no fetching at all
        assert off.status_code == 400 and "does not fetch image URLs" in off.json()["error"]["message"]
        policy = 'fetch_image_urls = true\nfetch_allow_private = true\nfetch_allow_hosts = ["127.0.0.1"]\n'
        with ServeProcess(tmp_path, tiny_glm4v, extra=policy) as fetching:
            # FakeServer answers GET with its health JSON: a URL that is not an image is a clear 400.
            bad = post(fetching, chat(url, QUESTION, max_tokens=1, logprobs=True))
            assert bad.status_code == 400 and "does not hold an image" in bad.json()["error"]["message"]
            other = post(fetching, chat(url.replace("127.0.0.1", "localhost"), QUESTION))
            assert other.status_code == 400 and "not in serve.fetch_allow_hosts" in other.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (chat("data:image/png;base64,!!!", QUESTION), 400, "not valid base64"),
        (
            chat("data:image/png;base64," + base64.b64encode(b"not an image").decode(), QUESTION),
            400,
            "does not hold an image",
        ),
        (chat("file:///etc/passwd", QUESTION), 400, "data: URI or an http(s) URL"),
        (chat("http://127.0.0.1:9/x.jpg", QUESTION), 400, "does not fetch image URLs"),
        ({"model": "tiny", "messages": [{"role": "user", "content": "hello"}]}, 400, "found 0"),
        ({"model": "tiny", "messages": []}, 400, "messages"),
        ({"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}, 400, "unknown role"),
        (chat(data_uri(random_image(1)), QUESTION, max_tokens=65), 400, "at most 64"),
        ("not a JSON object", 400, "body"),
    ],
)
def test_bad_requests_get_clear_errors(server: ServeProcess, body: Any, status: int, message: str) -> None:
    response = post(server, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"
    assert httpx.get(server.url.removesuffix("/v1") + "/health").status_code == 200  # still serving


def test_several_frames_through_the_official_openai_client(server: ServeProcess, tiny_glm4v: Path) -> None:
    """A camera's last frames in one message, as Home Assistant's LLM Vision and Frigate's GenAI send them:
    one multi-image prompt, answered as the engine answers a rule over several frames."""
    from openai import OpenAI

    frames = [random_image(70 + i, 256, 160) for i in range(4)]
    client = OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    content: list[Any] = [{"type": "image_url", "image_url": {"url": data_uri(f, "PNG")}} for f in frames]
    content.append({"type": "text", "text": QUESTION})
    reply = client.chat.completions.create(
        model="tiny-glm4v", messages=[{"role": "user", "content": content}], max_tokens=1, logprobs=True, top_logprobs=2
    )
    assert reply.choices[0].logprobs is not None and reply.choices[0].logprobs.content is not None
    p = {t.token: math.exp(t.logprob) for t in reply.choices[0].logprobs.content[0].top_logprobs}
    local = TransformersBackend.load(str(tiny_glm4v), device="cpu")
    assert p["yes"] == pytest.approx(
        local.score_yes_no([Prompt(frames[-1], QUESTION, tuple(frames[:-1]))])[0].p_yes, abs=1e-4
    )
    assert p["yes"] != pytest.approx(local.score_yes_no([Prompt(frames[-1], QUESTION)])[0].p_yes, abs=1e-6)
    text = client.chat.completions.create(
        model="tiny-glm4v", messages=[{"role": "user", "content": content}], max_tokens=4
    )
    assert isinstance(text.choices[0].message.content, str)


def test_too_many_images_too_many_pixels_and_a_body_that_is_not_json(server: ServeProcess) -> None:
    uri = data_uri(random_image(53))
    body = chat(uri, QUESTION)
    body["messages"][0]["content"] += [{"type": "image_url", "image_url": {"url": uri}}] * 8
    assert (
        "expected 1 to 8 image_url parts (serve.max_images), found 9" in post(server, body).json()["error"]["message"]
    )
    large = data_uri(Image.new("RGB", (5000, 4000), (90, 140, 80)), "PNG")  # 20 MP each, a few KB as PNG
    body = chat(large, QUESTION)
    body["messages"][0]["content"].append({"type": "image_url", "image_url": {"url": large}})
    refused = post(server, body)
    assert refused.status_code == 413
    assert refused.json()["error"]["message"].startswith("image 2 of 2: image_url does not hold an image")
    assert "(the images of one request share that budget)" in refused.json()["error"]["message"]
    raw = httpx.post(f"{server.url}/chat/completions", content=b"{oops", timeout=10)
    assert raw.status_code == 400 and "not JSON" in raw.json()["error"]["message"]


def test_an_api_key_is_required_when_configured(tiny_glm4v: Path, tmp_path: Path) -> None:
    with ServeProcess(tmp_path, tiny_glm4v, api_key="s3cret-key-0123456789") as keyed:
        assert httpx.get(f"{keyed.url}/models").status_code == 401
        wrong = httpx.get(f"{keyed.url}/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
        right = {"Authorization": "Bearer s3cret-key-0123456789"}
        assert httpx.get(f"{keyed.url}/models", headers=right).status_code == 200
        assert httpx.get(keyed.url.removesuffix("/v1") + "/health").status_code == 200  # probes need no key
    assert "s3cret-key-0123456789" not in keyed.log.read_text()


def test_listening_beyond_this_machine_needs_a_key(tiny_glm4v: Path, tmp_path: Path) -> None:
    config = tmp_path / "open.toml"
    config.write_text(f'[model]\nid = "{tiny_glm4v}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "streamwatch", "serve", "-c", str(config), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "serve.api_key" in result.stderr
