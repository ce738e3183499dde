"""Server-rendered pages: event timeline, event detail (review), cameras, rules, ask, login."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from streamwatch.config.passwords import MAX_SECRET_CHARS
from streamwatch.errors import DroppedError
from streamwatch.inference.types import AnswerKind
from streamwatch.store.events import EventFilter
from streamwatch.vocabulary import EventKind, ReviewChoice, Severity
from streamwatch.web.api import MAX_OFFSET, context, question_checked, uploaded_image
from streamwatch.web.guard import DEVICE_COOKIE, DEVICE_S, SESSION_COOKIE, Guard
from streamwatch.web.strict_json import StrictJsonRoute

router = APIRouter(include_in_schema=False, route_class=StrictJsonRoute)
login_router = APIRouter(include_in_schema=False, route_class=StrictJsonRoute)
PAGE_SIZE = 30
MAX_PAGE = MAX_OFFSET // PAGE_SIZE


def render(request: Request, template: str, **values: Any) -> HTMLResponse:
    guard = request.app.state.guard
    session = guard.session(request)
    values |= {"csrf": guard.signer.csrf(session), "logged_in": session is not None, "auth": guard.config.auth_required}
    response: HTMLResponse = request.app.state.templates.TemplateResponse(request, template, values)
    return response


def _blank(value: str | None) -> str | None:
    return value or None


def since_of(since: str | None, since_local: str | None) -> datetime | None:
    """The date filter: `since` (ISO 8601, the page's script sends the viewer's time as UTC), else the
    form's own field (no script: read as UTC, as its label then says); unreadable: no filter."""
    try:
        if since:
            moment = datetime.fromisoformat(since)
        elif since_local:
            moment = datetime.fromisoformat(since_local)
        else:
            return None
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.get("/events", response_class=HTMLResponse)
async def timeline(
    request: Request,
    camera: str | None = None,
    rule: str | None = None,
    severity: str | None = None,
    kind: str | None = None,
    reviewed: str | None = None,
    since: str | None = None,
    since_local: str | None = None,
    page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
) -> HTMLResponse:
    """The raw event timeline (the home page lists alerts, web/alerts.py)."""
    since_time = since_of(since, since_local)
    where = EventFilter(
        camera=_blank(camera),
        rule=_blank(rule),
        severity=_blank(severity),
        kind=_blank(kind),
        since=since_time,
        reviewed={"yes": True, "no": False}.get(reviewed or ""),
    )
    store = context(request).store
    events, total = await asyncio.gather(
        asyncio.to_thread(store.list, where, limit=PAGE_SIZE, offset=page * PAGE_SIZE),
        asyncio.to_thread(store.count, where),
    )
    seen_cameras, seen_rules = await asyncio.to_thread(store.facets)
    cameras = sorted({s.id for s in context(request).camera_status()} | set(seen_cameras))
    rules = sorted({r.id for r in context(request).rule_views()} | set(seen_rules))
    query = {
        "camera": camera or "",
        "rule": rule or "",
        "severity": severity or "",
        "kind": kind or "",
        "reviewed": reviewed or "",
        "since": since_time.isoformat() if since_time else "",
    }
    return render(
        request,
        "events.html",
        events=events,
        total=total,
        page=page,
        pages=(total - 1) // PAGE_SIZE + 1,
        query=query,
        cameras=cameras,
        rules=rules,
        severities=list(reversed(Severity)),
        kinds=list(EventKind),
    )


@router.get("/events/{event_id}", response_class=HTMLResponse)
async def event_detail(request: Request, event_id: str) -> HTMLResponse:
    event = await asyncio.to_thread(context(request).store.get, event_id)
    if event is None:
        raise HTTPException(404, f"no event {event_id!r}")
    return render(request, "event.html", event=event, choices=ReviewChoice)


@router.post("/events/{event_id}/review")
async def review_form(
    request: Request,
    event_id: str,
    verdict: Annotated[ReviewChoice, Form()],
    csrf: Annotated[str, Form()],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    if not request.app.state.guard.csrf_ok(request, csrf):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
    event = await asyncio.to_thread(context(request).store.review, event_id, verdict.verdict, note)
    if event is None:
        raise HTTPException(404, f"no event {event_id!r}")
    return RedirectResponse(f"/events/{event_id}", status_code=303)


@router.get("/cameras", response_class=HTMLResponse)
async def cameras_page(request: Request) -> HTMLResponse:
    return render(request, "cameras.html", cameras=context(request).camera_status())


@router.get("/rules", response_class=HTMLResponse)
async def rules_page(request: Request) -> HTMLResponse:
    return render(request, "rules.html", rules=context(request).rule_views(), model=context(request).model_status())


@router.get("/ask", response_class=HTMLResponse)
async def ask_page(request: Request) -> HTMLResponse:
    return render(request, "ask.html", result=None, question="", error=None)


@router.post("/ask", response_class=HTMLResponse)
async def ask_form(
    request: Request,
    image: Annotated[UploadFile, File()],
    question: Annotated[str, Form(min_length=1, max_length=100_000)],
    csrf: Annotated[str, Form(max_length=200)],
    kind: Annotated[Literal["yes_no", "text"], Form()] = "yes_no",
) -> HTMLResponse:
    if not request.app.state.guard.csrf_ok(request, csrf):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
    try:
        question_checked(request, question)
        kind_value = AnswerKind.YES_NO if kind == "yes_no" else AnswerKind.GENERATE
        async with uploaded_image(request, image) as picture:
            answer = await context(request).ask(picture, question, kind_value)
    except HTTPException as exc:
        return render(request, "ask.html", result=None, question=question, error=exc.detail)
    except DroppedError as exc:
        return render(request, "ask.html", result=None, question=question, error=f"the model is too busy: {exc}")
    return render(request, "ask.html", result=answer, question=question, error=None)


@login_router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", next=_safe_next(next), error=None)


@login_router.post("/login")
async def login(
    request: Request,
    password: Annotated[str, Form(max_length=MAX_SECRET_CHARS)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    guard: Guard = request.app.state.guard
    device = guard.device(request)  # a browser that logged in before: throttled on its own
    who = f"device:{device}" if device is not None else None
    right, throttled = await guard.verify(request, password, guard.config.password_hash, who=who)
    if not right:
        error = "Too many attempts; try again later." if throttled is not None else "Wrong password."
        refused = render(request, "login.html", next=_safe_next(next), error=error)
        refused.status_code = throttled.status_code if throttled is not None else 401
        if throttled is not None:
            refused.headers["Retry-After"] = throttled.headers["Retry-After"]
        return refused
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        guard.signer.session(),
        max_age=int(guard.signer.max_age_s),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    if device is None:
        response.set_cookie(
            DEVICE_COOKIE,
            guard.new_device(),
            max_age=DEVICE_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


@login_router.post("/logout")
async def logout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Ends the session on the server too: the cookie no longer works even if someone kept a copy."""
    guard: Guard = request.app.state.guard
    if not guard.csrf_ok(request, csrf):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
    guard.signer.revoke(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _safe_next(target: str) -> str:
    """Only local paths: never redirect a login to another site."""
    return target if target.startswith("/") and not target.startswith("//") else "/"
