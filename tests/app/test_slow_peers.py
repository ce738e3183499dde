"""Slow image hosts against `streamwatch serve`: a host that trickles its body or its header lines a
byte at a time is cut off at the fetch deadline (the connection closed long before the host finished),
and while such fetches run, another client's `data:` URI request is answered (no shared slot held).
Against real local HTTP servers and a real serve process on the tiny model."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.helpers import random_image, wait_for
from support.serve import ServeProcess, chat, data_uri

from streamwatch.serve.errors import ApiError
from streamwatch.serve.fetch import NOT_FETCHED, FetchPolicy, fetch
from streamwatch.serve.images import Fetcher

QUESTION = "Is any person climbing the fence? Answer yes or no."
TRICKLE_S = 0.25  # one piece every this long...
PIECES = 400  # ...for 100 s: far past any deadline here
PNG = base64.b64decode(data_uri(random_image(7), "PNG").split(",", 1)[1])


class Trickler:
    """A TCP server that answers every connection slowly: `body` (a large Content-Length, then a byte at
    a time), `headers` (one header line at a time, never ending), `status` (the status line a byte at a
    time), or `late` (a small PNG after 0.6 s). Counts what it sent before each connection closed."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sent: list[int] = []  # pieces sent per finished connection
        self.active = 0  # connections being served now
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _address = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        pieces = 0
        with self._lock:
            self.active += 1
        with connection:
            try:
                connection.recv(65536)  # the request
                if self.mode == "late":  # a whole small image, after a pause
                    time.sleep(0.6)
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(PNG) + PNG)
                elif self.mode == "body":
                    connection.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 50000000\r\n\r\n"
                    )
                elif self.mode == "headers":
                    connection.sendall(b"HTTP/1.1 200 OK\r\n")
                for index in range(PIECES if self.mode != "late" else 0):
                    if self.stopping.wait(TRICKLE_S):
                        break
                    piece = {"body": b"x", "headers": f"X-Slow-{index}: y\r\n".encode(), "status": b"H"}[self.mode]
                    connection.sendall(piece)
                    pieces += 1
            except OSError:  # the client closed it
                pass
        with self._lock:
            self.active -= 1
            self.sent.append(pieces)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/frame.png"

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()


@pytest.fixture(params=["body", "headers", "status"])
def trickler(request: pytest.FixtureRequest) -> Iterator[Trickler]:
    server = Trickler(request.param)
    yield server
    server.stop()


def test_a_trickling_host_is_cut_off_at_the_deadline(trickler: Trickler, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    policy = FetchPolicy(enabled=True, allow_private=True, timeout_s=1.0)
    with pytest.raises(ApiError) as refused:
        fetch(trickler.url, policy)
    assert refused.value.status == 400 and refused.value.message == NOT_FETCHED  # the uniform answer
    wait_for(lambda: len(trickler.sent) == 1, 30, "the host to see its connection closed")
    assert trickler.sent[0] < PIECES  # closed on it, not left to finish its 100 s
    assert "timed out after 1 s (serve.fetch_timeout_s)" in caplog.text


def test_slow_hosts_hold_no_slot_another_client_needs(tiny_glm4v: Path, tmp_path: Path) -> None:
    slow = Trickler("body")
    policy = "fetch_image_urls = true\nfetch_allow_private = true\nfetch_timeout_s = 120\n"
    try:
        with ServeProcess(tmp_path, tiny_glm4v, extra=policy) as server:
            results: list[int] = []

            def slow_request() -> None:
                body = chat(slow.url, QUESTION, max_tokens=1)
                results.append(httpx.post(f"{server.url}/chat/completions", json=body, timeout=180).status_code)

            threads = [threading.Thread(target=slow_request, daemon=True) for _ in range(4)]  # > the decode slots
            for thread in threads:
                thread.start()
            wait_for(lambda: slow.active >= 4, 60, "four fetches in flight")
            plain = httpx.post(
                f"{server.url}/chat/completions",
                json=chat(data_uri(random_image(3)), QUESTION, max_tokens=1, logprobs=True),
                timeout=180,
            )
            assert plain.status_code == 200, plain.text
            assert not results and all(thread.is_alive() for thread in threads)  # the slow ones still fetching
            slow.stop()  # the host goes away: the slow requests end with the uniform 400
            for thread in threads:
                thread.join(60)
            assert results == [400] * 4
    finally:
        slow.stop()


def test_the_fetches_of_one_request_share_one_deadline() -> None:
    """Three images that each take 0.6 s against a 1 s deadline: each alone would fit, the request does not."""
    late = Trickler("late")
    try:
        fetcher = Fetcher(FetchPolicy(enabled=True, allow_private=True, timeout_s=1.0))

        async def three() -> ApiError:
            with pytest.raises(ApiError) as refused:
                await fetcher.payloads([late.url, late.url, late.url])
            return refused.value

        error = asyncio.run(three())
        assert error.status == 400 and error.message.startswith(("image 1 of 3", "image 2 of 3"))
    finally:
        late.stop()
