"""REST API under /api: events (filter, page, detail, snapshot, clip, review), cameras, rules, ask."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response
from PIL import Image
from pydantic import BaseModel, Field

from streamwatch.alerts.payload import event_payload, review_fields
from streamwatch.alerts.recorder import jpeg
from streamwatch.errors import DroppedError, ImageRejected
from streamwatch.inference.types import AnswerKind
from streamwatch.ingest.budget import NoRoom, held_images
from streamwatch.store.events import EventFilter
from streamwatch.store.models import Event
from streamwatch.vocabulary import EventKind, Severity, Verdict
from streamwatch.web.context import WebContext
from streamwatch.web.strict_json import StrictJsonRoute

router = APIRouter(route_class=StrictJsonRoute)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
IMAGE_WAIT_S = 30.0  # how long an upload may wait for room in web.image_memory_mb
MAX_OFFSET = 1_000_000  # deeper paging is refused (a filter narrows the list instead)
THUMBNAIL_SIDE = 640
DECODING_AT_ONCE = 2  # uploaded images decoded at the same time: bounds the memory they take


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.context
    return ctx


def event_json(request: Request, event: Event) -> dict[str, Any]:
    data = event_payload(event, None)
    data.pop("snapshot_file")
    data.pop("clip_file")
    data["snapshot_url"] = request.app.url_path_for("event_snapshot", event_id=event.uid) if event.snapshot else None
    data["clip_url"] = request.app.url_path_for("event_clip", event_id=event.uid) if event.clip else None
    return data | review_fields(event)


def event_filter(
    camera: str | None = None,
    rule: str | None = None,
    severity: Severity | None = None,
    kind: EventKind | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    reviewed: bool | None = None,
    verdict: Verdict | None = None,
) -> EventFilter:
    return EventFilter(
        camera=camera,
        rule=rule,
        kind=kind,
        severity=severity,
        since=since,
        until=until,
        reviewed=reviewed,
        verdict=verdict,
    )


@router.get("/events")
async def list_events(
    request: Request,
    where: Annotated[EventFilter, Depends(event_filter)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    """Events newest first. `since`/`until` are ISO 8601 times; `reviewed=false` for the review queue."""
    store = context(request).store
    events, total = await asyncio.gather(
        asyncio.to_thread(store.list, where, limit=limit, offset=offset), asyncio.to_thread(store.count, where)
    )
    following = offset + len(events)
    return {
        "total": total,
        "offset": offset,
        "next_offset": following if following < total else None,
        "items": [event_json(request, e) for e in events],
    }


def _event(request: Request, event_id: str) -> Event:
    event = context(request).store.get(event_id)
    if event is None:
        raise HTTPException(404, f"no event {event_id!r}")
    return event


@router.get("/events/{event_id}")
async def get_event(request: Request, event_id: str) -> dict[str, Any]:
    return event_json(request, await asyncio.to_thread(_event, request, event_id))


@router.get("/events/{event_id}/snapshot", name="event_snapshot", response_class=FileResponse)
async def event_snapshot(request: Request, event_id: str) -> FileResponse:
    event = await asyncio.to_thread(_event, request, event_id)
    path = context(request).store.snapshot_path(event)
    if path is None or not path.is_file():
        raise HTTPException(404, "this event has no snapshot (or it was deleted by retention)")
    return FileResponse(path, media_type="image/jpeg")


@router.get("/events/{event_id}/clip.mp4", name="event_clip", response_class=FileResponse)
async def event_clip(request: Request, event_id: str) -> FileResponse:
    """The alert's MP4 clip (open events; written clip_post_s after the alert opened)."""
    event = await asyncio.to_thread(_event, request, event_id)
    if event.clip is None:
        raise HTTPException(404, "this event has no clip (not an open event, clips off, or deleted by retention)")
    path = context(request).store.clip_path(event)
    if path is None:
        raise HTTPException(404, "the clip is still being recorded; try again in a few seconds", {"Retry-After": "5"})
    if not path.is_file():
        raise HTTPException(404, "the clip file is gone (deleted by retention or the disk cap)")
    return FileResponse(path, media_type="video/mp4")


class Review(BaseModel):
    verdict: Verdict | None = Field(None, description="confirmed, false_positive, or null to mark it seen")
    note: str | None = Field(None, max_length=2000)


@router.post("/events/{event_id}/review")
async def review_event(request: Request, event_id: str, review: Review) -> dict[str, Any]:
    """Mark an event reviewed (with a cookie session, send the page's CSRF token as X-CSRF-Token)."""
    if not request.app.state.guard.csrf_ok(request, None):
        raise HTTPException(403, "missing or wrong CSRF token")
    event = await asyncio.to_thread(context(request).store.review, event_id, review.verdict, review.note)
    if event is None:
        raise HTTPException(404, f"no event {event_id!r}")
    return event_json(request, event)


@router.get("/cameras")
async def cameras(request: Request) -> list[dict[str, Any]]:
    """Live status of every camera, with the URL of its newest frame."""
    return [
        {**status.as_dict(), "frame_url": request.app.url_path_for("camera_frame", camera_id=status.id)}
        for status in context(request).camera_status()
    ]


@router.get("/cameras/{camera_id}/frame.jpg", name="camera_frame")
async def camera_frame(request: Request, camera_id: str) -> Response:
    if camera_id not in {s.id for s in context(request).camera_status()}:
        raise HTTPException(404, f"no camera {camera_id!r}")
    frame = context(request).latest_frame(camera_id)
    if frame is None:
        raise HTTPException(404, "no frame yet")

    def thumbnail() -> bytes:
        image = frame.image()
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        return jpeg(image, quality=80)

    return Response(await asyncio.to_thread(thumbnail), media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/rules")
async def rules(request: Request) -> list[dict[str, Any]]:
    """Active rules with the cameras they apply to and their latest answers."""
    return [
        view.__dict__ | {"last_answers": [a.__dict__ for a in view.last_answers]}
        for view in context(request).rule_views()
    ]


@contextlib.asynccontextmanager
async def uploaded_image(request: Request, upload: UploadFile) -> AsyncIterator[Image.Image]:
    """The uploaded picture (at most MAX_UPLOAD_BYTES, its pixel count checked before decoding), shrunk
    to the model's size as soon as it is decoded and held within web.image_memory_mb until the block
    ends: 413 for what could never fit, 422 for what is not a whole image, 503 while the budget is full."""
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"image larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    state = request.app.state
    try:
        async with held_images(
            [data],
            budget=state.images,
            decoding=state.decoding,
            max_side=context(request).image_side(),
            timeout_s=IMAGE_WAIT_S,
        ) as (picture,):
            del data  # the encoded bytes are not needed while the picture waits
            yield picture
    except ImageRejected as exc:
        raise HTTPException(413 if exc.too_large else 422, str(exc)) from None
    except NoRoom as exc:
        raise HTTPException(413 if exc.too_large else 503, str(exc), {"Retry-After": "5"}) from None


def question_checked(request: Request, question: str) -> str:
    """The question, or 422 saying why it is refused (empty, too long for the model)."""
    why = context(request).question_problem(question)
    if why is not None:
        raise HTTPException(422, f"question: {why}")
    return question


@router.post("/ask")
async def ask(
    request: Request,
    image: Annotated[UploadFile, File(description="the picture")],
    question: Annotated[str, Form(min_length=1, max_length=100_000)],
    kind: Annotated[Literal["yes_no", "text"], Form()] = "yes_no",
    csrf: Annotated[str | None, Form(max_length=200)] = None,
) -> dict[str, Any]:
    """One question about one uploaded image, through the same shared queue as the cameras."""
    if not request.app.state.guard.csrf_ok(request, csrf):
        raise HTTPException(403, "missing or wrong CSRF token")
    question_checked(request, question)
    answer_kind = AnswerKind.YES_NO if kind == "yes_no" else AnswerKind.GENERATE
    async with uploaded_image(request, image) as picture:
        try:
            answer = await context(request).ask(picture, question, answer_kind)
        except DroppedError as exc:
            raise HTTPException(503, f"the model is too busy: {exc}") from None
    return {
        "answer": answer.text,
        "confidence": answer.confidence,
        "latency_ms": round(answer.latency_s * 1000, 1),
        "model": answer.model,
        "batch_size": answer.batch_size,
    }
