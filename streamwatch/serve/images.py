"""The bytes of a chat request's images: `data:` URIs, or http(s) URLs fetched under the fetch policy
(decoded then within one pixel budget and serve.image_memory_mb: `ingest/budget.held_images`).

Getting the bytes and decoding them are two steps with slots of their own: a fetch waits on the
network in `Fetcher`'s threads (at most `FETCHING_AT_ONCE`, each within the fetch deadline, a wait for
a thread included), a decode takes one of the few decode slots only once its bytes are here. So a slow
image host holds no slot that a request with a `data:` URI needs."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from streamwatch.serve.errors import ApiError
from streamwatch.serve.fetch import PARAM, FetchPolicy, fetch

FETCHING_AT_ONCE = 8


class Fetcher:
    """The bytes of each image URL of a request, in order; http(s) ones fetched in threads of its own."""

    def __init__(self, policy: FetchPolicy, at_once: int = FETCHING_AT_ONCE) -> None:
        self.policy = policy
        self._pool = ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="serve-fetch")
        self._slots = asyncio.Semaphore(at_once)

    async def payloads(self, urls: Sequence[str]) -> list[bytes]:
        """The bytes of each image; the fetches of one request share one deadline (fetch_timeout_s)."""
        deadline = time.monotonic() + self.policy.timeout_s
        found: list[bytes] = []
        for number, url in enumerate(urls, 1):
            try:
                found.append(await self._payload(url, deadline))
            except ApiError as exc:
                raise _one_of(exc, number, len(urls)) from None
        return found

    async def _payload(self, url: str, deadline: float) -> bytes:
        if url.startswith("data:"):
            return _data_uri(url, self.policy.max_bytes)
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise ApiError(
                400, f"image_url must be a data: URI or an http(s) URL, not {scheme or 'a bare path'!r}", PARAM
            )
        if not self.policy.enabled:
            return fetch(url, self.policy)  # refused at once, saying how to enable it
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                await self._slots.acquire()
        except TimeoutError:
            raise ApiError(503, "too many image URLs are being fetched; retry later, or send a data: URI") from None
        try:
            policy = dataclasses.replace(self.policy, timeout_s=max(0.001, deadline - time.monotonic()))
            return await asyncio.get_running_loop().run_in_executor(self._pool, fetch, url, policy)
        finally:
            self._slots.release()


def _one_of(exc: ApiError, number: int, count: int) -> ApiError:
    """An ApiError about one image of several, saying which (the error itself for a single image)."""
    if count == 1:
        return exc
    return ApiError(exc.status, f"image {number} of {count}: {exc.message}", exc.param)


def _loop_time(deadline: float) -> float:
    """A time.monotonic() deadline on the running loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


def _data_uri(url: str, max_bytes: int) -> bytes:
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise ApiError(400, "image_url data: URI must be base64, like data:image/jpeg;base64,...", PARAM)
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise ApiError(413, f"image is larger than {max_bytes / 1e6:g} MB", PARAM)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "image_url data: URI is not valid base64", PARAM) from None
