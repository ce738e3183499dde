"""The shared batched engine behind an OpenAI-compatible API: `/v1/chat/completions`, `/v1/models`,
`/health`. Requests from every client go into the same queue, so they are batched together.

Every request passes the `Gate` first: the API key (when configured; wrong keys are throttled per
client, the right key is never refused; the client is the address that connected unless it is one of
`serve.trusted_proxies`) before any body is read, then a body bound that fits one image of `serve.max_image_mb` (several
images of one request share it, and one pixel budget). Questions are bounded like
rule questions (characters, and tokens of the model); `/health` answers 503 while the model is
stalled (requests waiting, no model call finishing)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

from streamwatch.config import ServeConfig
from streamwatch.errors import DroppedError, ImageRejected, InferenceError
from streamwatch.inference.limits import PromptLimits
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.types import AnswerKind, Prompt
from streamwatch.inference.types import Request as Query
from streamwatch.inference.watchdog import ModelWatchdog
from streamwatch.ingest.budget import MemoryBudget, NoRoom, held_images
from streamwatch.serve.chat import ChatQuery, completion, parse_chat, stream_chunks, usage, yes_no_logprobs
from streamwatch.serve.errors import ApiError
from streamwatch.serve.fetch import PARAM, FetchPolicy
from streamwatch.serve.images import Fetcher
from streamwatch.web.gate import SMALL_BODY, Gate, Throttle, allowed_hosts, client_of
from streamwatch.web.strict_json import loads

log = logging.getLogger(__name__)
DECODING_AT_ONCE = 2


def create_openai_app(
    queue: InferenceQueue,
    config: ServeConfig,
    model_name: str,
    *,
    default_tokens: int,
    timeout_s: float,
    limits: PromptLimits,
    watchdog: ModelWatchdog,
    max_image_side: int = 1280,
) -> FastAPI:
    app = FastAPI(title="streamwatch OpenAI-compatible API", version="1")
    key = config.api_key.get_secret_value().encode() if config.api_key else None
    created = int(time.time())
    policy = FetchPolicy(
        enabled=config.fetch_image_urls,
        allow_hosts=tuple(config.fetch_allow_hosts),
        allow_private=config.fetch_allow_private,
        max_bytes=int(config.max_image_mb * 1e6),
        timeout_s=config.fetch_timeout_s,
    )
    chat_body = int(config.max_image_mb * 1e6 * 4 / 3) + 1024 * 1024  # one base64 image and the JSON around it
    throttle = Throttle()
    decoding = asyncio.Semaphore(DECODING_AT_ONCE)
    budget = MemoryBudget(int(config.image_memory_mb * 1e6), "serve.image_memory_mb")
    fetcher = Fetcher(policy)

    async def authorise(request: Request) -> Response | None:
        if key is None or request.url.path == "/health":
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key):
            return None  # the right key is never refused, whatever others sent from the same address
        client = client_of(request)
        wait = throttle.retry_after(client)
        if wait > 0:
            return ApiError(429, "too many requests with a wrong API key; try again later").response(wait)
        throttle.failed(client)
        return ApiError(401, "missing or wrong API key (Authorization: Bearer KEY)").response()

    app.add_middleware(
        Gate,
        check=authorise,
        hosts=allowed_hosts(config.host, []),
        body_limit=lambda path: chat_body if path == "/v1/chat/completions" else SMALL_BODY,
        headers=lambda _path: {"X-Content-Type-Options": "nosniff"},
        refusal=lambda status, message: ApiError(status, message).response(),
    )

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown routes (404), wrong methods (405) and the like, in OpenAI's error shape too."""
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return ApiError(exc.status_code, message).response(headers=exc.headers)

    @app.get("/health")
    async def health() -> JSONResponse:
        stats = queue.stats()
        stalled = watchdog.problem()
        body = {
            "status": "stalled" if stalled else "ok",
            "model": model_name,
            "pending": stats.pending,
            "answered": stats.answered,
            "dropped": sum(stats.dropped.values()),
            "failed": stats.failed,
        }
        return JSONResponse(body | ({"reason": stalled} if stalled else {}), status_code=503 if stalled else 200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "streamwatch"}],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        try:
            body = loads(await request.body())
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"the request body is not JSON: {exc.msg}") from None
        except UnicodeDecodeError:
            raise ApiError(400, "the request body is not JSON") from None
        except RecursionError:
            raise ApiError(400, "the request body is nested too deeply") from None
        query = parse_chat(
            body, default_tokens=default_tokens, max_tokens=config.max_tokens, max_images=config.max_images
        )
        if query.model and query.model != model_name:
            raise ApiError(
                404, f"model: {query.model!r} is not served here; this server serves {model_name!r}", "model"
            )
        why = limits.problem(query.question, len(query.image_urls))
        if why is not None:
            raise ApiError(400, f"messages: {why}", "messages")
        payloads = await fetcher.payloads(query.image_urls)  # a slow image host holds no decode slot
        async with images_held(payloads) as (*frames, image):
            reply = await answered(query, image, frames, client_of(request))
        if query.stream:
            return StreamingResponse(stream_chunks(reply, query.include_usage), media_type="text/event-stream")
        return JSONResponse(reply)

    @contextlib.asynccontextmanager
    async def images_held(payloads: list[bytes]) -> AsyncIterator[list[Image.Image]]:
        """The request's images, shrunk to the model's size as soon as they are decoded, held within
        serve.image_memory_mb until answered."""
        try:
            async with held_images(
                payloads, budget=budget, decoding=decoding, max_side=max_image_side, timeout_s=timeout_s
            ) as images:
                payloads.clear()  # the encoded bytes are not needed while the pictures wait
                yield images
        except ImageRejected as exc:
            message = f"image_url does not hold an image this server can read: {exc}"
            message = f"{exc.which}: {message}" if exc.which else message
            raise ApiError(413 if exc.too_large else 400, message, PARAM) from None
        except NoRoom as exc:
            raise ApiError(
                413 if exc.too_large else 503, str(exc), PARAM, retry_after_s=None if exc.too_large else 5
            ) from None

    async def answered(query: ChatQuery, image: Image.Image, frames: list[Image.Image], client: str) -> dict[str, Any]:
        kind = AnswerKind.YES_NO if query.yes_no else AnswerKind.GENERATE
        try:
            answer = await queue.ask(
                Query(
                    image,
                    query.question,
                    kind,
                    source=f"api:{client}",  # round-robin fairness between clients
                    deadline=time.monotonic() + timeout_s,
                    max_new_tokens=query.max_tokens,
                    frames=tuple(frames),
                )
            )
        except DroppedError as exc:
            raise ApiError(503, f"the engine is overloaded or stopping ({exc.reason}); retry later") from None
        except InferenceError:
            raise ApiError(500, "inference failed; see the server log") from None
        logprobs = yes_no_logprobs(answer.confidence or 0.0, query.top_logprobs) if query.yes_no else None
        asked = Prompt(image, query.question, tuple(frames))
        prompt_tokens = await asyncio.to_thread(queue.backend.prompt_tokens, asked, query.yes_no)
        counted = None if prompt_tokens is None or answer.tokens is None else (prompt_tokens, answer.tokens)
        return completion(model_name, answer.text, logprobs, usage(counted))

    return app
