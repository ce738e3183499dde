"""What every HTTP request passes before an app sees it (the web UI and `streamwatch serve` alike).

`Gate` is ASGI middleware that, in order: refuses a `Host` the server does not answer to (a page on
another site that rebinds its name to 127.0.0.1 cannot reach a loopback instance), authenticates
(so nobody is made to wait on, or can fill the disk with, the body of a request that will be refused),
bounds the body (Content-Length checked before a byte is read; a chunked body counted while it is
buffered), and adds the security headers to every response. `Throttle` makes guessing expensive
for the guesser and cheap for the server: a client that failed too often is refused at once, and
the slow password hash runs at most a few times a second for unknown secrets in all.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Check = Callable[[Request], Awaitable[Response | None]]  # None: let it through
Refusal = Callable[[int, str], Response]  # (status, message): a refusal in the app's own error shape


def detail(status: int, message: str) -> Response:
    """The web API's error shape (FastAPI's): `{"detail": message}`."""
    return JSONResponse({"detail": message}, status_code=status)


SMALL_BODY = 64 * 1024  # every route that takes no upload
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass
class Throttle:
    """Per client (IP address): `max_failures` failed logins or tokens within `window_s` lock it out
    until they age out. In all: at most `checks_per_s` slow hash checks of secrets not seen before."""

    max_failures: int = 10
    window_s: float = 600.0
    checks_per_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, collections.deque[float]] = field(default_factory=dict)
    _budget: float = 0.0
    _budget_at: float = 0.0

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        now = self.clock()
        recent = self._failures.get(client)
        if recent is None:
            return 0.0
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if not recent:
            del self._failures[client]
            return 0.0
        return recent[0] + self.window_s - now if len(recent) >= self.max_failures else 0.0

    def failed(self, client: str) -> None:
        if len(self._failures) > 100_000:  # a flood of addresses: forget the oldest rather than grow
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(client, collections.deque(maxlen=self.max_failures)).append(self.clock())

    def may_hash(self) -> bool:
        """Take one slow hash check from the shared budget (a token bucket of one second's worth)."""
        now = self.clock()
        self._budget = min(self.checks_per_s, self._budget + (now - self._budget_at) * self.checks_per_s)
        self._budget_at = now
        if self._budget < 1.0:
            return False
        self._budget -= 1.0
        return True


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def too_many(retry_after: float) -> Response:
    return JSONResponse(
        {"detail": "too many failed attempts; try again later"},
        status_code=429,
        headers={"Retry-After": str(max(1, round(retry_after)))},
    )


def allowed_hosts(bind_host: str, extra: list[str]) -> set[str] | None:
    """Host names (without port) requests may carry; None: any (off loopback, nothing configured)."""
    from streamwatch.config import is_loopback

    if extra:
        return {*extra, *LOOPBACK_NAMES, bind_host}
    return {*LOOPBACK_NAMES, bind_host} if is_loopback(bind_host) else None


def _host_name(header: str) -> str:
    """`example.com:8080` -> `example.com`; `[::1]:8080` -> `::1`."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        check: Check | None,
        body_limit: Callable[[str], int],
        hosts: set[str] | None,
        headers: Callable[[str], dict[str, str]],
        refusal: Refusal = detail,
    ) -> None:
        self.app = app
        self.refusal = refusal
        self.check = check
        self.body_limit = body_limit
        self.hosts = {name.lower() for name in hosts} if hosts is not None else None
        self.headers = headers
        self._large = asyncio.Semaphore(4)  # bodies over SMALL_BODY being received at once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        extra = self.headers(path)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.lower().encode(), v.encode()) for k, v in extra.items()),
                ]
            await send(message)

        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is None and self.check is not None:
            refusal = await self.check(request)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        limit = self.body_limit(path)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._too_large(limit)(scope, receive, send_with_headers)
            return
        chunked = length is None and scope["method"] not in ("GET", "HEAD", "OPTIONS")
        large = limit > SMALL_BODY and (chunked or (length is not None and int(length) > SMALL_BODY))
        slot = _Slot(self._large if large else None)
        try:
            await slot.take()
            if chunked:  # no Content-Length: counted while it is buffered
                body = await _buffered(receive, limit)
                if body is None:
                    await self._too_large(limit)(scope, receive, send_with_headers)
                    return
                receive = _replay(body)
                slot.give_back()
            await self.app(scope, slot.watching(receive), send_with_headers)
        finally:
            slot.give_back()

    def _too_large(self, limit: int) -> Response:
        return self.refusal(413, f"request body larger than {limit} bytes")

    def _refusal(self, request: Request) -> Response | None:
        if self.hosts is None:
            return None
        host = _host_name(request.headers.get("host", "")).lower()
        if host not in self.hosts:
            return self.refusal(421, "unknown Host header")
        return None


class _Slot:
    """One of the few places for a large body while it is received: given back as soon as the whole body
    has arrived (or the client went away), not when the answer is sent, so requests that wait long after
    their upload (for the model) do not keep others from uploading."""

    def __init__(self, semaphore: asyncio.Semaphore | None) -> None:
        self.semaphore, self.held = semaphore, False

    async def take(self) -> None:
        if self.semaphore is not None:
            await self.semaphore.acquire()
            self.held = True

    def give_back(self) -> None:
        if self.held and self.semaphore is not None:
            self.held = False
            self.semaphore.release()

    def watching(self, receive: Receive) -> Receive:
        if not self.held:
            return receive

        async def watched() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                self.give_back()
            return message

        return watched


async def _buffered(receive: Receive, limit: int) -> bytes | None:
    """A body sent without Content-Length, read up to `limit`; None past it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # like a client that sends nothing more: until disconnected
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
