"""`streamwatch serve`: the model and its shared queue behind the OpenAI-compatible API, no cameras."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from streamwatch.config import Settings, is_loopback
from streamwatch.housekeeping import STATUS_CHECK_S, Loops
from streamwatch.inference.build import build_queue, load_backend
from streamwatch.inference.watchdog import ModelWatchdog
from streamwatch.lifecycle import StartupError, stopped_by_signals, wait_for_stop
from streamwatch.serve.api import create_openai_app
from streamwatch.web.app import listen, start_server, stop_server

log = logging.getLogger(__name__)


async def serve_model(
    settings: Settings,
    *,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    started: Callable[[], None] | None = None,
) -> None:
    """`streamwatch serve`: the model and its shared queue behind the OpenAI-compatible API (no cameras)."""
    config, model = settings.serve, settings.model
    if not is_loopback(config.host) and config.api_key is None:
        raise StartupError(
            f"{settings.source}: serve: listening on {config.host} beyond this machine needs "
            'serve.api_key (api_key = "${STREAMWATCH_API_KEY}"), or bind to 127.0.0.1'
        )
    listener = listen(settings, "serve", config.host, config.port, "set [serve] port to a free port")
    stop = stop or asyncio.Event()
    with stopped_by_signals(stop):
        backend = await asyncio.to_thread(load_backend, settings)
        queue = build_queue(settings, backend)
        queue.start()
        try:
            limits = backend.prompt_limits(
                max_chars=model.max_question_chars,
                max_tokens=model.max_question_tokens,
                max_new_tokens=model.max_new_tokens,
            )
            watchdog = ModelWatchdog(queue, model.stall_timeout_s)
            app = create_openai_app(
                queue,
                config,
                settings.served_model_name(),
                default_tokens=model.max_new_tokens,
                timeout_s=model.request_timeout_s,
                limits=limits,
                watchdog=watchdog,
            )
            server, task = await start_server(app, listener)
            log.info(
                "OpenAI-compatible API on http://%s:%d/v1 (model %s)",
                config.host,
                config.port,
                settings.served_model_name(),
            )
            if started is not None:
                started()
            loops = Loops()
            loops.start("model-watchdog", watchdog.step, STATUS_CHECK_S)
            await wait_for_stop(stop, duration_s)
            await loops.stop()
            await stop_server(server, task)
        finally:
            listener.close()
            if await asyncio.to_thread(queue.stop, drain=True):
                queue.backend.close()
