"""The shared batched engine behind an OpenAI-compatible API: `/v1/chat/completions`, `/v1/models`,
`/health`. Requests from every client go into the same queue, so they are batched together."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from streamwatch.config import ServeConfig
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.types import AnswerKind, DroppedError
from streamwatch.inference.types import Request as Query
from streamwatch.serve.chat import completion, parse_chat, stream_chunks, yes_no_logprobs
from streamwatch.serve.errors import ApiError
from streamwatch.serve.images import load_image

log = logging.getLogger(__name__)


def create_openai_app(queue: InferenceQueue, config: ServeConfig, model_name: str, *, default_tokens: int,
                      timeout_s: float) -> FastAPI:  # fmt: skip
    app = FastAPI(title="streamwatch OpenAI-compatible API", version="1")
    key = config.api_key.get_secret_value().encode() if config.api_key else None
    created = int(time.time())
    max_bytes = int(config.max_image_mb * 1e6)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    def authorise(request: Request) -> None:
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key):
            raise ApiError(401, "missing or wrong API key (Authorization: Bearer KEY)")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        stats = queue.stats()
        return {"status": "ok", "model": model_name, "pending": stats.pending, "answered": stats.answered,
                "dropped": sum(stats.dropped.values()), "failed": stats.failed}  # fmt: skip

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorise(request)
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created,
                                            "owned_by": "streamwatch"}]}  # fmt: skip

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        authorise(request)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not JSON") from None
        query = parse_chat(body, default_tokens=default_tokens, max_tokens=config.max_tokens)
        image = await asyncio.to_thread(load_image, query.image_url, fetch=config.fetch_image_urls,
                                        max_bytes=max_bytes, timeout_s=config.fetch_timeout_s)  # fmt: skip
        kind = AnswerKind.YES_NO if query.yes_no else AnswerKind.GENERATE
        source = request.client.host if request.client else "client"  # round-robin fairness between clients
        try:
            deadline = time.monotonic() + timeout_s
            answer = await queue.ask(Query(image, query.question, kind, source=f"api:{source}", deadline=deadline,
                                           max_new_tokens=query.max_tokens))  # fmt: skip
        except DroppedError as exc:
            raise ApiError(503, f"the engine is overloaded or stopping ({exc.reason}); retry later") from None
        except RuntimeError:
            raise ApiError(500, "inference failed; see the server log") from None
        logprobs = yes_no_logprobs(answer.confidence or 0.0, query.top_logprobs) if query.yes_no else None
        reply = completion(model_name, answer.text, logprobs)
        if query.stream:
            return StreamingResponse(stream_chunks(reply), media_type="text/event-stream")
        return JSONResponse(reply)

    return app
