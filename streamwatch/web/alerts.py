"""Alerts as one item each, in the REST API (/api/alerts) and as the web UI's home page (/) and alert
page (/alerts/ID): open → updates → resolved together, filtered and searched; a review applies to the
alert (its open event)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from streamwatch.errors import SearchError
from streamwatch.store.alert_list import Alert, AlertFilter, AlertList, alert_payload
from streamwatch.store.search import MAX_QUERY_CHARS
from streamwatch.vocabulary import ReviewChoice, Severity, Verdict
from streamwatch.web.api import MAX_OFFSET, Review, context, event_json
from streamwatch.web.pages import render, since_of
from streamwatch.web.strict_json import StrictJsonRoute

api = APIRouter(tags=["alerts"], route_class=StrictJsonRoute)
page = APIRouter(include_in_schema=False, route_class=StrictJsonRoute)
PAGE_SIZE = 20
MAX_PAGE = MAX_OFFSET // PAGE_SIZE


def alerts_of(request: Request) -> AlertList:
    return AlertList(context(request).store.db)


def alert_json(request: Request, alert: Alert) -> dict[str, Any]:
    first, last, clip = alert.first, alert.last_snapshot, alert.clip
    url = request.app.url_path_for
    return alert_payload(alert) | {
        "first_snapshot_url": url("event_snapshot", event_id=first.uid) if first.snapshot else None,
        "last_snapshot_url": url("event_snapshot", event_id=last.uid) if last and last.snapshot else None,
        "clip_url": url("event_clip", event_id=clip.uid) if clip else None,
    }


def alert_filter(
    camera: str | None = None,
    rule: str | None = None,
    severity: Severity | None = None,
    state: Literal["open", "resolved"] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    reviewed: bool | None = None,
    verdict: Verdict | None = None,
    q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS, description="words that must all appear")] = None,
) -> AlertFilter:
    return AlertFilter(camera, rule, severity, state, since, until, reviewed, verdict, q)


async def _page(request: Request, where: AlertFilter, limit: int, offset: int) -> tuple[list[Alert], int]:
    store = alerts_of(request)
    try:
        return await asyncio.gather(
            asyncio.to_thread(store.list, where, limit=limit, offset=offset), asyncio.to_thread(store.count, where)
        )
    except SearchError as exc:
        raise HTTPException(422, str(exc)) from None


@api.get("/alerts")
async def list_alerts(
    request: Request,
    where: Annotated[AlertFilter, Depends(alert_filter)],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    """Alerts newest first (by when they opened), each with its duration, peak confidence, first and last
    snapshot and clip. `q`: words searched in question, answer, description, review note, camera, rule
    and title (all must appear, as words or their start). `since`/`until`: when it opened (ISO 8601)."""
    alerts, total = await _page(request, where, limit, offset)
    following = offset + len(alerts)
    return {
        "total": total,
        "offset": offset,
        "next_offset": following if following < total else None,
        "items": [alert_json(request, alert) for alert in alerts],
    }


def _alert(request: Request, alert_id: str) -> Alert:
    alert = alerts_of(request).get(alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert {alert_id!r}")
    return alert


@api.get("/alerts/{alert_id}")
async def get_alert(request: Request, alert_id: str) -> dict[str, Any]:
    """One alert and its events, oldest first."""
    alert = await asyncio.to_thread(_alert, request, alert_id)
    return alert_json(request, alert) | {"timeline": [event_json(request, e) for e in alert.events]}


@api.post("/alerts/{alert_id}/review")
async def review_alert(request: Request, alert_id: str, review: Review) -> dict[str, Any]:
    """Review an alert (stored on its open event). With a cookie session, send X-CSRF-Token."""
    if not request.app.state.guard.csrf_ok(request, None):
        raise HTTPException(403, "missing or wrong CSRF token")
    alert = await asyncio.to_thread(_alert, request, alert_id)
    await asyncio.to_thread(context(request).store.review, alert.first.uid, review.verdict, review.note)
    return alert_json(request, await asyncio.to_thread(_alert, request, alert_id))


# -- pages -----------------------------------------------------------------------------------------------
@page.get("/", response_class=HTMLResponse)
async def alerts_page(
    request: Request,
    camera: str | None = None,
    rule: str | None = None,
    severity: str | None = None,
    state: str | None = None,
    reviewed: str | None = None,
    since: str | None = None,
    since_local: str | None = None,
    q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS)] = None,
    page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
) -> HTMLResponse:
    """The home page: alerts, newest first, filtered and searched."""
    since_time = since_of(since, since_local)
    where = AlertFilter(
        camera=camera or None,
        rule=rule or None,
        severity=severity or None,
        state=state if state in ("open", "resolved") else None,
        since=since_time,
        reviewed={"yes": True, "no": False}.get(reviewed or ""),
        q=q or None,
    )
    alerts, total = await _page(request, where, PAGE_SIZE, page * PAGE_SIZE)
    seen_cameras, seen_rules = await asyncio.to_thread(context(request).store.facets)
    query = {"camera": camera, "rule": rule, "severity": severity, "state": state, "reviewed": reviewed}
    query |= {"since": since_time.isoformat() if since_time else "", "q": q}
    return render(
        request,
        "alerts.html",
        alerts=[(alert, alert_json(request, alert)) for alert in alerts],
        total=total,
        page=page,
        pages=(total - 1) // PAGE_SIZE + 1,
        query={key: value or "" for key, value in query.items()},
        cameras=sorted({s.id for s in context(request).camera_status()} | set(seen_cameras)),
        rules=sorted({r.id for r in context(request).rule_views()} | set(seen_rules)),
        severities=list(reversed(Severity)),
    )


@page.get("/alerts/{alert_id}", response_class=HTMLResponse)
async def alert_page(request: Request, alert_id: str) -> HTMLResponse:
    alert = await asyncio.to_thread(_alert, request, alert_id)
    return render(request, "alert.html", alert=alert, shown=alert_json(request, alert), choices=ReviewChoice)


@page.post("/alerts/{alert_id}/review")
async def alert_review_form(
    request: Request,
    alert_id: str,
    verdict: Annotated[ReviewChoice, Form()],
    csrf: Annotated[str, Form(max_length=200)],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    if not request.app.state.guard.csrf_ok(request, csrf):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
    alert = await asyncio.to_thread(_alert, request, alert_id)
    await asyncio.to_thread(context(request).store.review, alert.first.uid, verdict.verdict, note)
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)
