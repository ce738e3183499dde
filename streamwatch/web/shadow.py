"""A fine-tune's adapter in shadow beside the live model (release/shadow.py), in the REST API
(/api/shadow, /api/jobs/{id}/shadow) and on the Jobs page: start it, see what it would have alerted on,
stop it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Form, HTTPException, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict

from streamwatch.errors import JobRefused, ShadowRefused
from streamwatch.learning.jobs.spec import Thresholds
from streamwatch.learning.release.shadow import CandidateShadow
from streamwatch.web.api import context
from streamwatch.web.jobs import _csrf, jobs_page, parse_thresholds, runner, who
from streamwatch.web.strict_json import StrictJsonRoute

api = APIRouter(tags=["jobs"], route_class=StrictJsonRoute)
page = APIRouter(include_in_schema=False, route_class=StrictJsonRoute)
ALERTS_SHOWN = 50


def candidate(request: Request) -> CandidateShadow:
    found: CandidateShadow | None = context(request).candidate
    if found is None:
        raise HTTPException(404, "this service runs no shadow candidates")
    return found


class ShadowBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    thresholds: Thresholds | None = None  # None: the thresholds the fine-tune's held-out part suggested


async def shadow_state(request: Request) -> dict[str, Any]:
    """The running candidate (with its counts per camera x rule), the recent runs, and the would-be alerts
    of the running one (else the latest), newest first."""
    shadow = candidate(request)
    runs = await asyncio.to_thread(shadow.runs.runs)
    shown = shadow.run.id if shadow.run is not None else (runs[0].id if runs else None)
    alerts = await asyncio.to_thread(shadow.runs.alerts, shown, ALERTS_SHOWN) if shown is not None else []
    return shadow.status() | {
        "runs": [run.to_json() for run in runs],
        "alerts_of": shown,
        "alerts": [alert.to_json() for alert in alerts],
    }


@api.get("/shadow")
async def get_shadow(request: Request) -> dict[str, Any]:
    """The shadow candidate: the running one (`run`, its counts per camera/rule: frames compared, yes
    answers of each, frames they differ on, alerts each would open on those frames), recent `runs`, and
    the `alerts` the shown run would have opened, with their frames."""
    return await shadow_state(request)


async def _start(request: Request, job_id: str, thresholds: dict[str, float] | None) -> dict[str, Any]:
    jobs = runner(request)
    try:
        adapter = Path(jobs.adapter_dir(job_id))
    except JobRefused as exc:
        raise HTTPException(422, str(exc)) from None
    chosen = await asyncio.to_thread(jobs.suggested_thresholds, job_id) if thresholds is None else thresholds
    try:
        run = await candidate(request).start(adapter=adapter, thresholds=chosen, job_id=job_id, by=who(request))
    except ShadowRefused as exc:
        raise HTTPException(409 if "running" in str(exc) else 422, str(exc)) from None
    return run.to_json()


@api.post("/jobs/{job_id}/shadow", status_code=201)
async def start_shadow(
    request: Request, job_id: str, body: Annotated[ShadowBody | None, Body()] = None
) -> dict[str, Any]:
    """Run a finished fine-tune job's adapter in shadow beside the live model, with `thresholds` (rule id
    -> value; left out: the ones its held-out part suggested). It never alerts; 409 while one runs."""
    _csrf(request, None)
    thresholds = None if body is None or body.thresholds is None else dict(body.thresholds)
    return await _start(request, job_id, thresholds)


@api.post("/shadow/stop")
async def stop_shadow(request: Request) -> dict[str, Any]:
    """Stop the shadow candidate (its would-be alerts and counts stay)."""
    _csrf(request, None)
    try:
        return (await candidate(request).stop(who(request))).to_json()
    except ShadowRefused as exc:
        raise HTTPException(409, str(exc)) from None


@api.get("/shadow/alerts/{alert_id}/snapshot", response_class=FileResponse)
async def shadow_snapshot(request: Request, alert_id: int) -> FileResponse:
    """The frame a would-be alert opened on (the rule's region of it)."""
    path = await asyncio.to_thread(candidate(request).runs.snapshot, alert_id)
    if path is None:
        raise HTTPException(404, f"no frame for shadow alert {alert_id}")
    return FileResponse(path, media_type="image/jpeg")


@page.post("/jobs/{job_id}/shadow")
async def shadow_form(
    request: Request,
    job_id: str,
    csrf: Annotated[str, Form(max_length=200)],
    thresholds: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    _csrf(request, csrf)
    try:
        await _start(request, job_id, parse_thresholds(thresholds) if thresholds.strip() else None)
    except JobRefused as exc:
        return await jobs_page(request, str(exc))
    except HTTPException as exc:
        return await jobs_page(request, str(exc.detail))
    return Response(status_code=303, headers={"location": "/jobs#shadow"})


@page.post("/shadow/stop")
async def stop_form(request: Request, csrf: Annotated[str, Form(max_length=200)]) -> Response:
    _csrf(request, csrf)
    try:
        await candidate(request).stop(who(request))
    except ShadowRefused as exc:
        return await jobs_page(request, str(exc))
    return Response(status_code=303, headers={"location": "/jobs#shadow"})
