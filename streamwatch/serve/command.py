"""`streamwatch serve`: the model and its shared queue behind the OpenAI-compatible API, no cameras."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from streamwatch.app.housekeeping import STATUS_CHECK_S, Loops
from streamwatch.app.lifecycle import stopped_by_signals, wait_for_stop
from streamwatch.config import Settings, is_loopback
from streamwatch.errors import StartupError
from streamwatch.inference.build import build_backend
from streamwatch.inference.engine import Engine, loaded_model
from streamwatch.serve.api import create_openai_app
from streamwatch.web.app import listen, serving

log = logging.getLogger(__name__)


async def serve_model(
    settings: Settings,
    *,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    started: Callable[[], None] | None = None,
) -> None:
    """Start-up: the port, the model, the queue, the API, the watchdog loop; stopping runs it backwards
    (requests in flight are answered before the model is closed)."""
    config, model = settings.serve, settings.model
    if not is_loopback(config.host) and config.api_key is None:
        raise StartupError(
            f"{settings.source}: serve: listening on {config.host} beyond this machine needs "
            'serve.api_key (api_key = "${STREAMWATCH_API_KEY}"), or bind to 127.0.0.1'
        )
    stop = stop or asyncio.Event()
    with stopped_by_signals(stop):
        async with contextlib.AsyncExitStack() as running:
            listener = listen(settings, "serve", config.host, config.port, "set [serve] port to a free port")
            running.callback(listener.close)
            engine = Engine(settings, await running.enter_async_context(loaded_model(settings, build_backend)))
            await running.enter_async_context(engine.answering())
            name = settings.served_model_name()
            app = create_openai_app(
                engine.queue,
                config,
                name,
                default_tokens=model.max_new_tokens,
                timeout_s=model.request_timeout_s,
                limits=engine.limits,
                watchdog=engine.watchdog,
                max_image_side=model.max_image_side,
            )
            await running.enter_async_context(serving(app, listener, config.trusted_proxies))
            log.info("OpenAI-compatible API on http://%s:%d/v1 (model %s)", config.host, config.port, name)
            loops = await running.enter_async_context(Loops())
            loops.start("model-watchdog", engine.watchdog.step, STATUS_CHECK_S)
            if started is not None:
                started()
            await wait_for_stop(stop, duration_s)
