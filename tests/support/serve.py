"""A real `streamwatch serve` process on a free port, and a small scripted faulty server."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from PIL import Image

from support.helpers import free_port


def data_uri(image: Image.Image, fmt: str = "JPEG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def chat(image_url: str, question: str, **extra: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": image_url}}]
    return {"model": "tiny-glm4v", "messages": [{"role": "user", "content": content}]} | extra


class ServeProcess:
    """`python -m streamwatch serve` on the tiny model; `url` is its /v1 base URL."""

    def __init__(self, folder: Path, model: Path, *, api_key: str | None = None, extra: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        key = f'api_key = "{api_key}"\n' if api_key else ""
        self.config = folder / "serve.toml"
        self.config.write_text(
            f'[model]\nid = "{model}"\nmax_batch = 8\nmax_wait_ms = 20\n\n[serve]\nport = {self.port}\n{key}{extra}'
        )
        self.log = folder / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServeProcess:
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamwatch", "serve", "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url.removesuffix("/v1") + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"serve did not come up: {self.log.read_text()}")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


Behaviour = Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes | dict[str, Any]) -> None:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
        handler.wfile.write(data)


def answer(text: str, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    return {"choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": "stop"}]}


class FakeServer:
    """An OpenAI-shaped server whose replies a test scripts: `behaviour(handler, body)` answers each
    chat request; `health` is the status of GET /v1/models. Counts what it received."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.health = 200
        self.chats = 0
        self.health_checks = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.health_checks += 1
                reply(self, server.health, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.chats += 1
                server.behaviour(self, body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
