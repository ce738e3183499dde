"""`streamwatch serve` fetches image URLs only on the operator's terms, against real local HTTP servers:
off by default, only allowed hosts, never internal addresses unless allowed (also after a redirect),
and the same answer for every network failure, so a client cannot map hosts and ports. Also the
request-level bounds of the API: question length, body size, JSON depth, wrong keys."""

from __future__ import annotations

import base64
import ipaddress
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.helpers import free_port, random_image
from support.serve import data_uri

from streamwatch.config import ServeConfig
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.watchdog import ModelWatchdog
from streamwatch.serve.api import create_openai_app
from streamwatch.serve.errors import ApiError
from streamwatch.serve.fetch import NOT_FETCHED, FetchPolicy, _public, fetch

PNG = base64.b64decode(data_uri(random_image(7), "PNG").split(",", 1)[1])


class Images:
    """A local image server: /frame.png, /redirect?to=URL, /big (3 MB), /slow (never answers), /missing (404)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/frame.png":
                    self._send(200, PNG)
                elif self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("=", 1)[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/big":
                    self._send(200, b"\0" * 3_000_000)
                elif self.path == "/slow":
                    threading.Event().wait(30)
                else:
                    self._send(404, b"no")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture(scope="module")
def images() -> Iterator[Images]:
    server = Images()
    yield server
    server.httpd.shutdown()


LOCAL = FetchPolicy(enabled=True, allow_private=True)


def refused(url: str, policy: FetchPolicy) -> ApiError:
    with pytest.raises(ApiError) as info:
        fetch(url, policy)
    return info.value


def test_fetching_is_off_unless_enabled(images: Images) -> None:
    error = refused(images.url("/frame.png"), FetchPolicy())
    assert error.status == 400 and "serve.fetch_image_urls = false" in error.message
    assert fetch(images.url("/frame.png"), LOCAL) == PNG


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.1", "0.0.0.0"])
def test_internal_addresses_are_refused_with_the_same_message_as_any_failure(images: Images, host: str) -> None:
    policy = FetchPolicy(enabled=True)
    for path in ("/frame.png", "/missing"):  # an open port that answers, or not: the caller cannot tell
        assert refused(images.url(path, host), policy).message == NOT_FETCHED
    closed = f"http://{host}:{free_port()}/x.png"
    assert refused(closed, policy).message == NOT_FETCHED


def test_network_failures_all_look_the_same(images: Images) -> None:
    for url in (
        images.url("/missing"),
        f"http://127.0.0.1:{free_port()}/x",
        images.url("/slow"),
        "http://no-such-host.invalid/x.png",
        images.url("/redirect?to=/redirect?to=/redirect?to=/redirect?to=/x"),
    ):
        error = refused(url, FetchPolicy(enabled=True, allow_private=True, timeout_s=1.0))
        assert (error.status, error.message) == (400, NOT_FETCHED), url


def test_redirects_are_checked_again(images: Images) -> None:
    allowed = FetchPolicy(enabled=True, allow_private=True, allow_hosts=("localhost",))
    assert fetch(images.url("/redirect?to=/frame.png", "localhost"), allowed) == PNG  # a relative hop, same host
    elsewhere = images.url("/redirect?to=" + images.url("/frame.png", "127.0.0.1"), "localhost")
    error = refused(elsewhere, allowed)
    assert error.status == 400 and "'127.0.0.1' is not in serve.fetch_allow_hosts" in error.message


def test_the_allow_list_takes_globs_and_the_size_cap_holds(images: Images) -> None:
    policy = FetchPolicy(enabled=True, allow_private=True, allow_hosts=("*.localhost", "127.0.0.*"))
    assert fetch(images.url("/frame.png"), policy) == PNG
    assert "not in serve.fetch_allow_hosts" in refused(images.url("/frame.png", "localhost"), policy).message
    big = refused(images.url("/big"), FetchPolicy(enabled=True, allow_private=True, max_bytes=1_000_000))
    assert big.status == 413


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("240.0.0.1", False),
    ],
)
def test_what_counts_as_a_public_address(address: str, public: bool) -> None:
    assert _public(ipaddress.ip_address(address)) is public


@pytest.fixture(scope="module")
def api(tiny_glm4v: Path) -> Iterator[TestClient]:
    """The serve app in process, on a queue with nothing behind it: these requests never reach the model."""
    from streamwatch.inference.backends.transformers import TransformersBackend

    backend = TransformersBackend.load(str(tiny_glm4v), device="cpu")
    queue = InferenceQueue(backend, max_batch=2, max_wait_s=0.01)
    limits = backend.prompt_limits(max_chars=2000, max_tokens=64, max_new_tokens=16)
    config = ServeConfig(api_key="key-0123456789abcdef", max_image_mb=1.0)
    app = create_openai_app(
        queue, config, "tiny", default_tokens=16, timeout_s=30, limits=limits, watchdog=ModelWatchdog(queue, 60)
    )
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        client.headers["Authorization"] = "Bearer key-0123456789abcdef"
        yield client


def chat(text: str) -> dict[str, Any]:
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": data_uri(random_image(1))}}]
    return {"model": "tiny", "messages": [{"role": "user", "content": content}]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x" * 1_000_000, "the question is 1000000 characters long; at most 2000"),
        ("Is the gate open? " * 60, "tokens long; at most 64 for"),
        ("   ", "no question text"),
    ],
)
def test_questions_are_bounded(api: TestClient, text: str, message: str) -> None:
    response = api.post("/v1/chat/completions", json=chat(text))
    assert response.status_code == 400 and message in response.json()["error"]["message"]


def test_bodies_and_nesting_are_bounded(api: TestClient) -> None:
    huge = api.post("/v1/chat/completions", content=b"{" + b" " * 3_000_000 + b"}")
    assert huge.status_code == 413
    deep = api.post("/v1/chat/completions", content=b"[" * 100_000 + b"]" * 100_000)
    assert deep.status_code == 400 and "nested too deeply" in deep.json()["error"]["message"]
    assert api.post("/v1/chat/completions", content=json.dumps({"messages": [1] * 10}).encode()).status_code == 400


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("field", ["temperature", "max_tokens", "top_logprobs"])
def test_numbers_that_are_not_json_numbers_are_a_400(api: TestClient, number: str, field: str) -> None:
    body = json.dumps(chat("Is the gate open?")).replace('"model"', f'"{field}": {number}, "model"', 1)
    response = api.post("/v1/chat/completions", content=body.encode())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "not JSON numbers" in error["message"] or "too large for a 64-bit float" in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "headers", "content", "status"),
    [
        ("POST", "/v1/chat/completions", {}, b"{" + b" " * 3_000_000 + b"}", 413),  # past the body bound
        ("GET", "/v1/models", {"Host": "evil.example"}, b"", 421),  # a name this server does not answer to
        ("GET", "/v1/nothing-here", {}, b"", 404),
        ("GET", "/v1/chat/completions", {}, b"", 405),
    ],
)
def test_every_refusal_is_in_openais_error_shape(
    api: TestClient, method: str, path: str, headers: dict[str, str], content: bytes, status: int
) -> None:
    response = api.request(method, path, headers=headers, content=content)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == status and error["message"]
    assert error["type"] in ("invalid_request_error", "not_found_error")


def test_wrong_keys_are_throttled(api: TestClient) -> None:
    wrong = {"Authorization": "Bearer guess"}
    codes = [api.get("/v1/models", headers=wrong).status_code for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    assert api.get("/v1/models", headers=wrong).json()["error"]["type"] == "rate_limit_error"
    assert api.get("/v1/models").status_code == 200  # the right key from the same client: never refused
    assert api.get("/health").status_code == 200  # probes are never throttled
