"""The HTTP server: REST API (/api, OpenAPI at /docs), server-rendered pages, /metrics and health."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from streamwatch import __version__
from streamwatch.config import Settings, WebConfig
from streamwatch.errors import StartupError
from streamwatch.ingest.budget import MemoryBudget
from streamwatch.web.api import DECODING_AT_ONCE, MAX_UPLOAD_BYTES
from streamwatch.web.context import WebContext
from streamwatch.web.gate import SMALL_BODY, Gate, allowed_hosts
from streamwatch.web.guard import Guard
from streamwatch.web.strict_json import StrictJsonRoute

HERE = Path(__file__).parent


def security_headers(path: str) -> dict[str, str]:
    """Every response: no framing by other sites, no MIME sniffing, no referrer to other sites, and
    (but on the API docs, which load Swagger UI from its CDN) scripts and styles from this server only."""
    headers = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
    if path in ("/docs", "/docs/oauth2-redirect"):
        return headers | {"Content-Security-Policy": "frame-ancestors 'none'"}
    return headers | {"Content-Security-Policy": CSP}


CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def when(moment: datetime | None) -> Markup:
    """A time for a page: UTC, named, in a <time> element that static/time.js shows in the viewer's zone."""
    if moment is None:
        return Markup("–")
    utc = moment.astimezone(UTC)
    return Markup('<time datetime="{}">{} UTC</time>').format(utc.isoformat(), utc.strftime("%Y-%m-%d %H:%M:%S"))


def duration(seconds: float) -> str:
    """A duration for a page: 45 s, 3 min 20 s, 2 h 5 min, 3 d 4 h."""
    whole = int(seconds)
    for unit, size, smaller, small in (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if whole >= size:
            rest = (whole % size) // small
            return f"{whole // size} {unit}" + (f" {rest} {smaller}" if rest else "")
    return f"{whole} s"


def body_limit(path: str) -> int:
    """Uploads (ask) may carry an image; everything else is a small form or JSON document."""
    return MAX_UPLOAD_BYTES + 1024 * 1024 if path in ("/api/ask", "/ask") else SMALL_BODY


def create_app(context: WebContext, config: WebConfig) -> FastAPI:
    app = FastAPI(title="streamwatch", version=__version__, docs_url="/docs", redoc_url=None)
    app.router.route_class = StrictJsonRoute
    guard = Guard(config)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["when"] = when
    templates.env.filters["duration"] = duration
    app.state.context, app.state.guard, app.state.templates = context, guard, templates
    app.state.decoding = asyncio.Semaphore(DECODING_AT_ONCE)
    app.state.images = MemoryBudget(int(config.image_memory_mb * 1e6), "web.image_memory_mb")
    app.add_middleware(
        Gate,
        check=guard.check,
        body_limit=body_limit,
        hosts=allowed_hosts(config.host, config.allowed_hosts),
        headers=security_headers,
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        """200 while the service can watch (model, database, loops): "ok", or "degraded" naming what
        fails beside (an output, an edit not applied); 503 "not ready" with the reason of each failing check."""
        checks = await asyncio.to_thread(context.readiness)
        reasons = {name: reason for name, reason in checks.items() if reason is not None}
        degrading = context.degrading()
        ready = all(name in degrading for name in reasons)
        body = {
            "ready": ready,
            "status": "not ready" if not ready else "degraded" if reasons else "ok",
            "checks": {name: reason is None for name, reason in checks.items()},
            "reasons": reasons,
            "degraded": sorted(name for name in reasons if name in degrading),
            "model": context.model_status(),  # a failed reload keeps the running model: ready, with its reason
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return PlainTextResponse(context.metrics.render(), media_type="text/plain; version=0.0.4")

    from streamwatch.web.alerts import api as alerts_api
    from streamwatch.web.alerts import page as alerts_page
    from streamwatch.web.api import router as api_router
    from streamwatch.web.jobs import api as jobs_api
    from streamwatch.web.jobs import page as jobs_page
    from streamwatch.web.labels import api as labels_api
    from streamwatch.web.labels import page as labels_page
    from streamwatch.web.pages import router as pages_router
    from streamwatch.web.shadow import api as shadow_api
    from streamwatch.web.shadow import page as shadow_page

    app.include_router(api_router, prefix="/api")
    app.include_router(alerts_api, prefix="/api")
    app.include_router(alerts_page)
    app.include_router(labels_api, prefix="/api")
    app.include_router(pages_router)
    app.include_router(labels_page)
    app.include_router(shadow_api, prefix="/api")  # before the jobs' /jobs/{job_id}/{action}
    app.include_router(shadow_page)
    app.include_router(jobs_api, prefix="/api")
    app.include_router(jobs_page)
    from streamwatch.web.pages import login_router

    app.include_router(login_router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    return app


class Server(uvicorn.Server):
    """uvicorn inside the service's event loop; the service owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """Bind the port ourselves, so a taken port is an OSError for the caller to explain rather than
    uvicorn exiting the process; done before the slow parts of start-up."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener


async def serve(
    app: FastAPI, listener: socket.socket, trusted_proxies: Sequence[str] = ()
) -> tuple[Server, asyncio.Task[None]]:
    """Start serving on `listener` in the running event loop; returns once it accepts connections.
    Forwarded headers are believed only from `trusted_proxies` (none: the client is who connected)."""
    host, port = listener.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=list(trusted_proxies),
    )
    server = Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]), name="web")
    while not server.started:
        if task.done():
            raise RuntimeError(f"web server could not start on {host}:{port}")
        await asyncio.sleep(0.05)
    return server, task


def listen(settings: Settings, section: str, host: str, port: int, hint: str) -> socket.socket:
    """The bound port, or a StartupError saying which config section to change: done before the slow
    parts of start-up (loading the model)."""
    try:
        return bind(host, port)
    except OSError as exc:
        raise StartupError(
            f"{settings.source}: {section}: cannot listen on {host}:{port} ({exc.strerror}); {hint}"
        ) from None


async def start_server(
    app: FastAPI, listener: socket.socket, trusted_proxies: Sequence[str] = ()
) -> tuple[Server, asyncio.Task[None]]:
    """`serve`, with a failure to start as a StartupError."""
    try:
        return await serve(app, listener, trusted_proxies)
    except RuntimeError as exc:
        raise StartupError(str(exc)) from None


@contextlib.asynccontextmanager
async def serving(app: FastAPI, listener: socket.socket, trusted_proxies: Sequence[str] = ()) -> AsyncIterator[None]:
    """The app served on `listener` for the life of the block."""
    server, task = await start_server(app, listener, trusted_proxies)
    try:
        yield
    finally:
        await stop_server(server, task)


async def stop_server(server: Server, task: asyncio.Task[None]) -> None:
    """Stop accepting, finish the requests in flight (at most 10 s)."""
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 10)
