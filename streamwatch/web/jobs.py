"""Eval and fine-tune jobs in the REST API (/api/jobs) and as a page (/jobs): start one, follow it,
read its reports and log, cancel it, apply a fine-tuned adapter to the running model."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from streamwatch.errors import JobRefused
from streamwatch.learning.jobs.records import LOG, JobRecord
from streamwatch.learning.jobs.runner import JobBusy, JobRunner
from streamwatch.learning.jobs.spec import LORA, EvalOptions, FinetuneOptions, JobOptions, Override, Thresholds
from streamwatch.web.api import context
from streamwatch.web.gate import client_of
from streamwatch.web.pages import render
from streamwatch.web.strict_json import StrictJsonRoute

api = APIRouter(tags=["jobs"], route_class=StrictJsonRoute)
page = APIRouter(include_in_schema=False, route_class=StrictJsonRoute)
LOG_TAIL_BYTES = 8192  # of a job's log shown on the page
MEDIA = {".md": "text/markdown; charset=utf-8", ".json": "application/json", ".png": "image/png"}


def runner(request: Request) -> JobRunner:
    jobs: JobRunner | None = context(request).jobs
    if jobs is None:
        raise HTTPException(404, "this service runs no jobs")
    return jobs


def job_json(request: Request, jobs: JobRunner, record: JobRecord) -> dict[str, Any]:
    files = {name: request.app.url_path_for("job_file", job_id=record.id, name=name) for name in jobs.files(record.id)}
    return record.__dict__ | {"files": files}


def _refused(exc: JobRefused) -> HTTPException:
    return HTTPException(409 if isinstance(exc, JobBusy) else 422, str(exc))


def who(request: Request) -> str:
    """Who made a change, as far as this service knows: how they were let in, and from where."""
    how = {"session": "a web session", "token": "an API token", "open": "an open web UI"}
    return f"{how.get(request.scope.get('state', {}).get('auth', ''), 'the web UI')} from {client_of(request)}"


def _csrf(request: Request, token: str | None) -> None:
    if not request.app.state.guard.csrf_ok(request, token):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")


@api.get("/jobs")
async def list_jobs(request: Request) -> dict[str, Any]:
    """Jobs, newest first, and the one running (or null)."""
    jobs = runner(request)
    records = await asyncio.to_thread(jobs.all)
    current = jobs.current()
    return {"items": [job_json(request, jobs, r) for r in records], "running": current.id if current else None}


@api.post("/jobs", status_code=202)
async def start_job(request: Request, options: Annotated[JobOptions, Body()]) -> dict[str, Any]:
    """Start `eval` or `finetune` (one job at a time: 409 while one runs). With a cookie session, send
    the page's CSRF token as X-CSRF-Token."""
    _csrf(request, None)
    jobs = runner(request)
    try:
        record = await jobs.submit(options, who(request))
    except JobRefused as exc:
        raise _refused(exc) from None
    return job_json(request, jobs, record)


@api.get("/jobs/{job_id}")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    jobs = runner(request)
    record = await asyncio.to_thread(jobs.get, job_id)
    if record is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job_json(request, jobs, record)


@api.post("/jobs/{job_id}/cancel")
async def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    _csrf(request, None)
    jobs = runner(request)
    try:
        return job_json(request, jobs, await jobs.cancel(job_id))
    except JobRefused as exc:
        raise _refused(exc) from None


class ApplyBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    thresholds: Thresholds = {}
    override: Override = None


@api.post("/jobs/{job_id}/apply", status_code=202)
async def apply_job(request: Request, job_id: str, body: Annotated[ApplyBody | None, Body()] = None) -> dict[str, Any]:
    """Start a release job for a finished fine-tune job's adapter (with `thresholds`, rule id -> value):
    the gate replays every rule's labelled examples with the live adapter and with this one; the adapter
    goes live only when no rule gets worse, or with `override` (a reason, recorded). Returns the release
    job; its state ends `succeeded` (live) or `refused`."""
    _csrf(request, None)
    jobs = runner(request)
    body = body or ApplyBody()
    try:
        record = await jobs.apply(job_id, who(request), dict(body.thresholds), body.override)
    except JobRefused as exc:
        raise _refused(exc) from None
    return job_json(request, jobs, record)


@api.get("/releases")
async def list_releases(request: Request) -> dict[str, Any]:
    """The versions of adapter + thresholds, newest first (refused changes included), and the live one."""
    versions, live = await asyncio.to_thread(runner(request).versions)
    return {"items": [v.to_json() for v in versions], "live": None if live is None else live.version}


@api.post("/releases/{version}/rollback")
async def rollback_release(request: Request, version: int) -> dict[str, Any]:
    """Make version `version`'s adapter and thresholds live again (recorded as a new version)."""
    _csrf(request, None)
    try:
        return (await runner(request).rollback(version, who(request))).to_json()
    except JobRefused as exc:
        raise _refused(exc) from None


@api.get("/jobs/{job_id}/files/{name:path}", name="job_file", response_class=FileResponse)
async def job_file(request: Request, job_id: str, name: str) -> FileResponse:
    """A job's log or report file (as listed in its `files`)."""
    path = await asyncio.to_thread(runner(request).file_path, job_id, name)
    if path is None or not path.is_file():
        raise HTTPException(404, f"no file {name!r} in job {job_id!r}")
    return FileResponse(path, media_type=MEDIA.get(path.suffix, "text/plain; charset=utf-8"))


# -- the page ----------------------------------------------------------------------------------------
@page.get("/jobs", response_class=HTMLResponse)
async def jobs_page(request: Request, error: str | None = None) -> HTMLResponse:
    jobs = runner(request)
    records = await asyncio.to_thread(jobs.all)
    current = jobs.current()
    tail = await asyncio.to_thread(_log_tail, jobs, current.id) if current else ""
    files = {record.id: jobs.files(record.id) for record in records}
    finished = [r.id for r in records if r.kind == "finetune" and r.state == "succeeded"]
    model = context(request).model_status()
    versions, live = await asyncio.to_thread(jobs.versions, 50)
    suggested = {r: await asyncio.to_thread(jobs.suggested_thresholds, r) for r in finished}
    from streamwatch.web.shadow import shadow_state  # it builds on this module's helpers

    shadow = await shadow_state(request) if context(request).candidate is not None else None
    response = render(
        request,
        "jobs.html",
        jobs=records,
        current=current,
        tail=tail,
        files=files,
        adapters=finished,
        manifests=await asyncio.to_thread(jobs.manifests),
        error=error,
        model=model,
        versions=versions,
        live=live,
        suggested=suggested,
        release=jobs.settings.release,
        shadow=shadow,
        lora=LORA,
    )
    if error is not None:
        response.status_code = 409 if "one job at a time" in error or "stop it first" in error else 422
    return response


@page.post("/jobs")
async def start_form(request: Request, csrf: Annotated[str, Form(max_length=200)]) -> Response:
    _csrf(request, csrf)
    form = await request.form()
    fields: dict[str, Any] = {
        key: value for key, value in form.items() if key not in ("csrf", "clips") and isinstance(value, str) and value
    }
    clips = [value for value in form.getlist("clips") if isinstance(value, str)]
    if clips:
        fields["clips"] = clips
    try:
        options = (FinetuneOptions if fields.get("kind") == "finetune" else EvalOptions).model_validate(fields)
        await runner(request).submit(options)
    except ValidationError as exc:
        problem = exc.errors()[0]
        return await jobs_page(request, f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}")
    except JobRefused as exc:
        return await jobs_page(request, str(exc))
    return RedirectResponse("/jobs", status_code=303)


@page.post("/jobs/{job_id}/{action}")
async def action_form(
    request: Request,
    job_id: str,
    action: str,
    csrf: Annotated[str, Form(max_length=200)],
    thresholds: Annotated[str, Form(max_length=20_000)] = "",
    override: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """cancel a running job; apply a fine-tune's adapter (with thresholds `rule=value, ...` and an
    optional override reason); override: a refused release again, with the reason given."""
    _csrf(request, csrf)
    jobs = runner(request)
    try:
        if action == "cancel":
            await jobs.cancel(job_id)
        elif action == "apply":
            await jobs.apply(job_id, who(request), parse_thresholds(thresholds), override.strip() or None)
        elif action == "override":
            await jobs.override(job_id, who(request), override)
        else:
            raise HTTPException(404, f"no action {action!r}")
    except JobRefused as exc:
        return await jobs_page(request, str(exc))
    return RedirectResponse("/jobs", status_code=303)


@page.post("/releases/{version}/rollback")
async def rollback_form(request: Request, version: int, csrf: Annotated[str, Form(max_length=200)]) -> Response:
    _csrf(request, csrf)
    try:
        await runner(request).rollback(version, who(request))
    except JobRefused as exc:
        return await jobs_page(request, str(exc))
    return RedirectResponse("/jobs#versions", status_code=303)


def parse_thresholds(text: str) -> dict[str, float]:
    """`rule=value, rule=value` (commas, spaces or new lines between) as the form writes them."""
    found: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        rule, _, value = item.partition("=")
        try:
            found[rule] = float(value)
        except ValueError:
            raise JobRefused(f"thresholds: {item!r}: write rule=value, e.g. solder-bridge=0.4") from None
    return found


def _log_tail(jobs: JobRunner, job_id: str) -> str:
    path = jobs.file_path(job_id, LOG)
    if path is None or not path.is_file():
        return ""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
        return handle.read().decode("utf-8", "replace")
