"""Chat-completions requests in, one (images, question) query out; answers back in the API's shape.

What is understood: the system/developer messages' text and the last user message (text parts and one
or more `image_url` parts: several are frames of one camera, oldest first, as Home Assistant's LLM
Vision and Frigate's GenAI send them; at most `serve.max_images`); `max_tokens` /
`max_completion_tokens`; `logprobs` with `top_logprobs`; `stream` (with `stream_options.include_usage`);
`usage` in every answer; `n` = 1 only; `response_format` text only. A request for one token with
`logprobs` is a yes/no question: it is answered by the engine's one-pass yes/no scorer, and the
logprobs are those of "yes" and "no" renormalised over the two (what a client deriving a confidence
from them needs). Sampling parameters are type-checked and ignored: answers are greedy.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamwatch.serve.errors import ApiError


def _number(low: float, high: float) -> Any:
    return Field(None, strict=True, ge=low, le=high)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = Field(False, strict=True)


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(strict=True)


class ChatRequest(BaseModel):
    """Types are checked strictly (a number sent as a string is refused, not converted). Sampling
    parameters are checked and then ignored: answers are greedy."""

    model_config = ConfigDict(extra="allow")  # other parameters (user, metadata, ...): accepted, unused

    model: str = Field("", strict=True, max_length=300)
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, strict=True, ge=1)
    max_completion_tokens: int | None = Field(None, strict=True, ge=1)
    logprobs: bool = Field(False, strict=True)
    top_logprobs: int | None = Field(None, strict=True, ge=0, le=20)
    stream: bool = Field(False, strict=True)
    stream_options: StreamOptions | None = None
    n: int = Field(1, strict=True, ge=1, le=128)
    temperature: float | None = _number(0, 2)
    top_p: float | None = _number(0, 1)
    presence_penalty: float | None = _number(-2, 2)
    frequency_penalty: float | None = _number(-2, 2)
    seed: int | None = Field(None, strict=True)
    response_format: ResponseFormat | None = None


@dataclass(frozen=True)
class ChatQuery:
    image_urls: tuple[str, ...]  # oldest first; the model's newest frame last
    question: str
    max_tokens: int
    yes_no: bool  # one token with logprobs: the yes/no scorer answers
    top_logprobs: int
    stream: bool
    model: str
    include_usage: bool = False  # streamed: a last chunk with the usage


def parse_chat(body: Any, *, default_tokens: int, max_tokens: int, max_images: int = 1) -> ChatQuery:
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(400, f"{where}: {first['msg']}", where) from None
    if request.n != 1:
        raise ApiError(400, f"n: {request.n} choices asked; this server gives one choice per request (n = 1)", "n")
    if request.response_format is not None and request.response_format.type != "text":
        raise ApiError(
            400,
            f"response_format: {request.response_format.type!r} is not supported: answers are free text (ask for "
            "the form you want in the question, or leave response_format out)",
            "response_format",
        )
    if request.stream_options is not None and not request.stream:
        raise ApiError(400, "stream_options: only with stream = true", "stream_options")
    system: list[str] = []
    user: dict[str, Any] | None = None
    for index, message in enumerate(request.messages):
        role = message.get("role")
        if role in ("system", "developer"):
            system += _texts(message.get("content"), index)
        elif role == "user":
            user = message | {"index": index}
        elif role not in ("assistant", "tool"):
            raise ApiError(400, f"messages[{index}].role: unknown role {role!r}", f"messages[{index}].role")
    if user is None:
        raise ApiError(400, "messages: no user message", "messages")
    index = user["index"]
    images = _images(user.get("content"), index)
    if not images or len(images) > max_images:
        raise ApiError(
            400,
            f"messages[{index}].content: expected 1 to {max_images} image_url parts (serve.max_images), "
            f"found {len(images)}",
            f"messages[{index}].content",
        )
    question = "\n".join([*system, *_texts(user.get("content"), index)]).strip()
    if not question:
        raise ApiError(400, f"messages[{index}].content: no question text", f"messages[{index}].content")
    tokens = request.max_completion_tokens or request.max_tokens or default_tokens
    if tokens > max_tokens:
        raise ApiError(400, f"max_tokens: at most {max_tokens} (serve.max_tokens)", "max_tokens")
    return ChatQuery(
        tuple(images),
        question,
        tokens,
        request.logprobs and tokens == 1,
        request.top_logprobs or 0,
        request.stream,
        request.model,
        request.stream_options is not None and request.stream_options.include_usage,
    )


def _parts(content: Any, index: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(part, dict) for part in content):
        raise ApiError(
            400, f"messages[{index}].content: expected a string or a list of parts", f"messages[{index}].content"
        )
    return content


def _texts(content: Any, index: int) -> list[str]:
    return [str(part.get("text", "")) for part in _parts(content, index) if part.get("type") == "text"]


def _images(content: Any, index: int) -> list[str]:
    urls = []
    for part in _parts(content, index):
        if part.get("type") == "image_url":
            value = part.get("image_url")
            url = value.get("url") if isinstance(value, dict) else value
            if not isinstance(url, str) or not url:
                raise ApiError(
                    400, f"messages[{index}].content: image_url part without a url", f"messages[{index}].content"
                )
            urls.append(url)
    return urls


def _logprob(p: float) -> float:
    return math.log(min(max(p, 1e-12), 1.0))


def yes_no_logprobs(p_yes: float, top: int) -> dict[str, Any]:
    """The chosen token's logprob and, up to `top`, the two alternatives (yes/no renormalised)."""
    ranked = sorted((("yes", p_yes), ("no", 1.0 - p_yes)), key=lambda pair: -pair[1])
    entries = [{"token": token, "logprob": _logprob(p), "bytes": list(token.encode())} for token, p in ranked]
    return {"content": [entries[0] | {"top_logprobs": entries[:top]}]}


def usage(counts: tuple[int, int] | None) -> dict[str, int] | None:
    """The `usage` block from (prompt tokens, completion tokens); None where the backend cannot count."""
    if counts is None:
        return None
    prompt, answer = counts
    return {"prompt_tokens": prompt, "completion_tokens": answer, "total_tokens": prompt + answer}


def completion(
    model: str, text: str, logprobs: dict[str, Any] | None, used: dict[str, int] | None = None
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": "stop",
            }
        ],
        "usage": used,
    }


def stream_chunks(reply: dict[str, Any], include_usage: bool = False) -> Iterator[str]:
    """A finished completion as server-sent events: the whole answer in one delta, then the end; with
    `include_usage`, every chunk has `usage: null` and a last one (no choices) carries it."""
    choice = reply["choices"][0]
    head = {key: reply[key] for key in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    if include_usage:
        head["usage"] = None
    delta = {"index": 0, "delta": choice["message"], "logprobs": choice["logprobs"], "finish_reason": None}
    yield f"data: {json.dumps(head | {'choices': [delta]})}\n\n"
    yield f"data: {json.dumps(head | {'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
    if include_usage:
        yield f"data: {json.dumps(head | {'choices': [], 'usage': reply['usage']})}\n\n"
    yield "data: [DONE]\n\n"
