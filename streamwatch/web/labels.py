"""The labelling queue: label requests in the REST API (/api/labels) and as a page (/labels) where an
operator answers Yes / No / Skip (keys y, n, s) for one frame after another, oldest first."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from streamwatch.store.labels import STATES, label_payload
from streamwatch.store.models import LabelRequest
from streamwatch.vocabulary import Label
from streamwatch.web.api import MAX_OFFSET, context
from streamwatch.web.pages import render
from streamwatch.web.strict_json import StrictJsonRoute

api = APIRouter(tags=["labels"], route_class=StrictJsonRoute)
page = APIRouter(include_in_schema=False, route_class=StrictJsonRoute)


def label_json(request: Request, item: LabelRequest) -> dict[str, Any]:
    frames = request.app.url_path_for("label_frames", label_id=item.uid) if item.window_frames else None
    return label_payload(item) | {
        "frame_url": request.app.url_path_for("label_frame", label_id=item.uid),
        "frames_url": frames,
    }


def _request(request: Request, label_id: str) -> LabelRequest:
    item = context(request).labels.get(label_id)
    if item is None:
        raise HTTPException(404, f"no label request {label_id!r}")
    return item


@api.get("/labels")
async def list_labels(
    request: Request,
    state: Annotated[str, Query(pattern=f"^({'|'.join(STATES)})$")] = "pending",
    camera: str | None = None,
    rule: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    """Label requests: `pending` (the queue, oldest first), `labelled` or `all` (newest first)."""
    labelled = STATES[state]
    store = context(request).labels
    items = await asyncio.to_thread(store.list, labelled=labelled, camera=camera, rule=rule, limit=limit, offset=offset)
    pending = await asyncio.to_thread(store.count, labelled=False)
    return {"items": [label_json(request, item) for item in items], "pending": pending}


@api.get("/labels/{label_id}")
async def get_label(request: Request, label_id: str) -> dict[str, Any]:
    return label_json(request, await asyncio.to_thread(_request, request, label_id))


@api.get("/labels/{label_id}/frame", name="label_frame", response_class=FileResponse)
async def label_frame(request: Request, label_id: str) -> FileResponse:
    item = await asyncio.to_thread(_request, request, label_id)
    path = context(request).labels.frame_path(item)
    if not path.is_file():
        raise HTTPException(404, "the frame file is gone")
    return FileResponse(path, media_type="image/jpeg")


@api.get("/labels/{label_id}/frames", name="label_frames", response_class=FileResponse)
async def label_frames(request: Request, label_id: str) -> FileResponse:
    """A question over several frames: those frames side by side, oldest first (`window_frames` of them)."""
    item = await asyncio.to_thread(_request, request, label_id)
    path = context(request).labels.window_path(item)
    if path is None or not path.is_file():
        raise HTTPException(404, "no frames kept beside this one")
    return FileResponse(path, media_type="image/jpeg")


class LabelBody(BaseModel):
    label: Label = Field(description="yes or no (the truth for the rule's question), or skip")


@api.post("/labels/{label_id}")
async def set_label(request: Request, label_id: str, body: LabelBody) -> dict[str, Any]:
    """Answer a label request (with a cookie session, send the page's CSRF token as X-CSRF-Token)."""
    if not request.app.state.guard.csrf_ok(request, None):
        raise HTTPException(403, "missing or wrong CSRF token")
    item = await asyncio.to_thread(context(request).labels.set_label, label_id, body.label)
    if item is None:
        raise HTTPException(404, f"no label request {label_id!r}")
    return label_json(request, item)


@page.get("/labels", response_class=HTMLResponse)
async def labelling_page(request: Request) -> HTMLResponse:
    store = context(request).labels
    first = await asyncio.to_thread(store.list, labelled=False, limit=1)
    pending = await asyncio.to_thread(store.count, labelled=False)
    return render(request, "labels.html", item=first[0] if first else None, pending=pending, labels=list(Label))


@page.post("/labels/{label_id}")
async def label_form(
    request: Request, label_id: str, label: Annotated[Label, Form()], csrf: Annotated[str, Form(max_length=200)]
) -> Response:
    if not request.app.state.guard.csrf_ok(request, csrf):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
    if await asyncio.to_thread(context(request).labels.set_label, label_id, label) is None:
        raise HTTPException(404, f"no label request {label_id!r}")
    return RedirectResponse("/labels", status_code=303)
