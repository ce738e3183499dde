"""A model on OpenAI-compatible chat-completions servers (vLLM, SGLang, llama.cpp server, Ollama,
LM Studio, another `streamwatch serve`).

A batch from the queue becomes concurrent requests (at most `concurrency` in flight over all
servers). Yes/no questions ask for one token with `logprobs`; P(yes) is the probability mass of the
yes variants against the no variants among the first token's alternatives. Servers that return no
logprobs are answered from the text ("Yes." -> 1.0, "no" -> 0.0). Timeouts, 5xx, 429 and malformed
replies are retried with backoff on the next server; other 4xx are the request's fault and are not.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from PIL import Image

from streamwatch.config import RemoteConfig
from streamwatch.errors import InferenceError
from streamwatch.inference.backends.base import Backend, YesNo
from streamwatch.inference.backends.endpoints import Endpoint, Endpoints
from streamwatch.inference.types import Prompt
from streamwatch.ingest.preprocess import fit_longest_side
from streamwatch.vlm.prompts import clean_answer

log = logging.getLogger(__name__)

_BACKOFF_S, _BACKOFF_MAX_S = 0.5, 8.0


class RemoteError(InferenceError):
    """The servers gave no usable answer; the message names the server and what went wrong."""


class _Retry(Exception):
    """A failure worth another attempt (timeout, 5xx, 429, malformed reply)."""


def p_yes_from(choice: dict[str, Any]) -> float:
    """P(yes) from the first token's logprobs where given, else from the answer's text."""
    first = ((choice.get("logprobs") or {}).get("content") or [None])[0]
    if isinstance(first, dict):
        mass = {"yes": 0.0, "no": 0.0}
        seen: set[str] = set()
        for entry in [first, *(first.get("top_logprobs") or [])]:
            token = str(entry.get("token", ""))
            word = token.strip(" \u2581\u0120").lower()  # raw SentencePiece / BPE word marks
            if word in mass and token not in seen and isinstance(entry.get("logprob"), int | float):
                seen.add(token)
                mass[word] += math.exp(entry["logprob"])
        if mass["yes"] + mass["no"] > 0:
            return mass["yes"] / (mass["yes"] + mass["no"])
    text = clean_answer(str((choice.get("message") or {}).get("content") or "")).lower()
    word = text.split()[0].strip(".,!:;\"'") if text.split() else ""
    if word in ("yes", "no"):
        return 1.0 if word == "yes" else 0.0
    raise RemoteError(f"the answer {text[:60]!r} is neither yes nor no, and the server sent no logprobs")


class OpenAIBackend(Backend):
    def __init__(self, model: str, config: RemoteConfig, *, max_image_side: int = 1280) -> None:
        self.name = model
        self.config = config
        self.max_image_side = max_image_side
        headers = {"Authorization": f"Bearer {config.api_key.get_secret_value()}"} if config.api_key else {}
        self._client = httpx.Client(
            headers=headers, timeout=config.timeout_s, limits=httpx.Limits(max_connections=config.concurrency)
        )
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="remote-model")
        self.endpoints = Endpoints(config.base_urls, failures=config.breaker_failures, reset_s=config.breaker_reset_s)
        self.endpoints.start_health_checks(self._healthy, config.health_interval_s)
        log.info(
            "model %s on %d server(s): %s",
            model,
            len(self.endpoints.all),
            ", ".join(e.shown for e in self.endpoints.all),
        )

    def score_yes_no(self, prompts: Sequence[Prompt]) -> list[YesNo]:
        extra = {"logprobs": True, "top_logprobs": self.config.top_logprobs} if self.config.top_logprobs else {}
        choices = self._pool.map(lambda p: self._complete(p, 1, extra), prompts)
        return [YesNo(p_yes_from(choice)) for choice in choices]

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        choices = self._pool.map(lambda p: self._complete(p, max_new_tokens, {}), prompts)
        return [clean_answer(str((c.get("message") or {}).get("content") or "")) for c in choices]

    def _image_url(self, image: Image.Image) -> str:
        buffer = io.BytesIO()
        fit_longest_side(image, self.max_image_side).convert("RGB").save(
            buffer, "JPEG", quality=self.config.jpeg_quality
        )
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()

    def _complete(self, prompt: Prompt, max_tokens: int, extra: dict[str, Any]) -> dict[str, Any]:
        images = [{"type": "image_url", "image_url": {"url": self._image_url(image)}} for image in prompt.images]
        content = [*images, {"type": "text", "text": prompt.question}]  # several frames: oldest first
        body = {
            "model": self.name,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "temperature": 0,
        } | extra
        attempts, why = self.config.retries + 1, ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(_BACKOFF_MAX_S, _BACKOFF_S * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2))
            endpoint = self.endpoints.pick()  # NoServerError: fail at once while every server is out
            try:
                choice = self._post(endpoint, body)
            except _Retry as exc:
                why = str(exc)
                self.endpoints.report(endpoint, False, why)
                continue
            self.endpoints.report(endpoint, True)
            return choice
        raise RemoteError(f"no answer after {attempts} attempt(s); last: {why}")

    def _post(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._client.post(f"{endpoint.url}/chat/completions", json=body)
        except httpx.TimeoutException:
            raise _Retry(f"{endpoint.shown}: no reply within {self.config.timeout_s:g} s") from None
        except httpx.TransportError as exc:
            raise _Retry(f"{endpoint.shown}: {type(exc).__name__}: {exc}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retry(f"{endpoint.shown}: HTTP {response.status_code}")
        if response.status_code >= 400:  # the request's fault: another attempt would fail the same way
            raise RemoteError(
                f"{endpoint.shown} refused the request: HTTP {response.status_code}: {_message(response)}"
            )
        try:
            choice = response.json()["choices"][0]
            if not isinstance(choice, dict) or "message" not in choice:
                raise TypeError
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retry(f"{endpoint.shown}: malformed reply {response.text[:80]!r}") from None
        return choice

    def _healthy(self, endpoint: Endpoint) -> bool:
        try:
            return self._client.get(f"{endpoint.url}/models", timeout=min(5.0, self.config.timeout_s)).is_success
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.endpoints.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
