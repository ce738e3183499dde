"""The model behind the shared queue, as the service holds it: every question goes through `ask`.

Two lifetimes, because shutdown must drain the queue before the outputs stop (answers in flight still
become events) but close the model only after: `loaded_model` holds the model (closed last), and
`Engine.answering` runs the queue's workers (started late, drained first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from PIL import Image

from streamwatch.config import Settings
from streamwatch.inference.backends.base import Backend
from streamwatch.inference.build import build_queue, load_backend
from streamwatch.inference.limits import PromptLimits
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.types import Answer, AnswerKind, Request
from streamwatch.inference.watchdog import ModelWatchdog

log = logging.getLogger(__name__)


@dataclass
class Model:
    """A loaded backend; `in_use` when a model call outlived the queue's drain (it is then never closed
    under that call)."""

    backend: Backend
    in_use: bool = False


@contextlib.asynccontextmanager
async def loaded_model(settings: Settings, factory: Callable[[Settings], Backend]) -> AsyncIterator[Model]:
    """The configured model, loaded off the event loop (a StartupError when it cannot be), released at exit."""
    model = Model(await asyncio.to_thread(load_backend, settings, factory))
    try:
        yield model
    finally:
        if not model.in_use:
            model.backend.close()


class Engine:
    """The queue in front of a loaded backend, its watchdog and its question limits."""

    def __init__(self, settings: Settings, model: Model, *, latency: Callable[[float], None] = lambda _s: None) -> None:
        self.settings, self.model = settings, model
        config = settings.model
        self.queue: InferenceQueue = build_queue(settings, model.backend)
        self.watchdog = ModelWatchdog(self.queue, config.stall_timeout_s)
        self.limits: PromptLimits = model.backend.prompt_limits(
            max_chars=config.max_question_chars,
            max_tokens=config.max_question_tokens,
            max_new_tokens=config.max_new_tokens,
        )
        self._latency = latency

    @contextlib.asynccontextmanager
    async def answering(self) -> AsyncIterator[Engine]:
        """The queue's workers run inside; at exit what is pending is answered, waiting at most until
        the requests' deadline (a model call stuck longer is left behind, and the model not closed)."""
        self.queue.start()
        try:
            yield self
        finally:
            drain_s = self.settings.model.request_timeout_s + 5
            if not await asyncio.to_thread(self.queue.stop, drain=True, timeout=drain_s):
                self.model.in_use = True

    def swap(self, backend: Backend) -> Backend:
        """Answer with `backend` from the next batch on (its question limits must equal the running
        model's: `limits_problem`); returns the previous one, for `release`."""
        old = self.queue.swap(backend)
        self.model.backend = backend
        return old

    def release(self, backend: Backend, timeout: float) -> None:
        """Close a swapped-out backend once its last batch finished (blocking: call it off the loop); one
        still busy after `timeout` is left unclosed, to the garbage collector."""
        if self.queue.wait_unused(backend, timeout):
            backend.close()
        else:
            log.warning("the previous model is still inside a batch after %.0f s; not closing it", timeout)

    def limits_problem(self, backend: Backend) -> str | None:
        """Why `backend` cannot take over from the running model: questions were checked against the
        running model's tokens and context, so another tokenizer or context needs a restart."""
        config = self.settings.model
        limits = backend.prompt_limits(
            max_chars=config.max_question_chars,
            max_tokens=config.max_question_tokens,
            max_new_tokens=config.max_new_tokens,
        )
        if _shape(limits) != _shape(self.limits):
            return (
                f"the new model's question limits differ from the running one's ({_shape(self.limits)} -> "
                f"{_shape(limits)}: context, image or question tokens); restart streamwatch to use it"
            )
        return None

    async def ask(
        self,
        source: str,
        question: str,
        image: Image.Image,
        kind: AnswerKind,
        tokens: int,
        frames: tuple[Image.Image, ...] = (),
    ) -> Answer:
        """Every model request (rules, describe, web/API) goes through here and the shared queue;
        `frames`: earlier frames, oldest first, for a question over several frames."""
        request = Request(
            image=image,
            question=question,
            kind=kind,
            source=source,
            deadline=time.monotonic() + self.settings.model.request_timeout_s,
            max_new_tokens=tokens,
            frames=frames,
        )
        answer = await self.queue.ask(request)
        self._latency(answer.latency_s)
        return answer


def _shape(limits: PromptLimits) -> tuple[int | None, int | None, int | None, int]:
    return (limits.max_tokens, limits.context, limits.image_tokens, limits.max_new_tokens)
