"""The HTTP server: REST API (/api, OpenAPI at /docs), server-rendered pages, /metrics and health."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from pathlib import Path

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from streamwatch import __version__
from streamwatch.config import WebConfig
from streamwatch.web.auth import Signer, verify_secret
from streamwatch.web.context import WebContext

HERE = Path(__file__).parent
SESSION_COOKIE = "sw_session"


class Guard:
    """Who may do what. Off loopback (or with a password/token configured) every route but /healthz,
    /readyz and /login needs a session cookie or `Authorization: Bearer TOKEN`. Every state-changing
    request from a browser session carries a CSRF token (form field `csrf` or header `X-CSRF-Token`)."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.signer = Signer(config.session_hours * 3600)

    def session(self, request: Request) -> dict[str, object] | None:
        return self.signer.load(request.cookies.get(SESSION_COOKIE))

    def bearer(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        return bool(token and self.config.token_hash and verify_secret(token, self.config.token_hash))

    def allowed(self, request: Request) -> bool:
        return not self.config.auth_required or self.bearer(request) or self.session(request) is not None

    def csrf_ok(self, request: Request, token: str | None) -> bool:
        if self.bearer(request):
            return True  # not a browser session: no cookie to ride on
        return self.signer.check_csrf(self.session(request), token or request.headers.get("x-csrf-token"))


class LoginRequired(Exception):
    pass


def create_app(context: WebContext, config: WebConfig) -> FastAPI:
    app = FastAPI(title="streamwatch", version=__version__, docs_url="/docs", redoc_url=None)
    guard = Guard(config)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.context, app.state.guard, app.state.templates = context, guard, templates

    def api_auth(request: Request) -> None:
        if not guard.allowed(request):
            raise HTTPException(401, "login or an API token required", headers={"WWW-Authenticate": "Bearer"})

    def page_auth(request: Request) -> None:
        if not guard.allowed(request):
            raise LoginRequired

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, _exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        checks = context.readiness()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(api_auth)])
    async def metrics() -> Response:
        return PlainTextResponse(context.metrics.render(), media_type="text/plain; version=0.0.4")

    from streamwatch.web.api import router as api_router
    from streamwatch.web.pages import router as pages_router

    app.include_router(api_router, prefix="/api", dependencies=[Depends(api_auth)])
    app.include_router(pages_router, dependencies=[Depends(page_auth)])
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


async def serve(app: FastAPI, listener: socket.socket) -> tuple[Server, asyncio.Task[None]]:
    """Start serving on `listener` in the running event loop; returns once it accepts connections."""
    host, port = listener.getsockname()[:2]
    server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[listener]), name="web")
    while not server.started:
        if task.done():
            raise RuntimeError(f"web server could not start on {host}:{port}")
        await asyncio.sleep(0.05)
    return server, task
