"""Labelled examples, produced one at a time (a frame is only in memory while it is scored):

- reviewed events of yes/no rules: an alert marked *confirmed* was truly yes on its frame, one marked
  *false positive* truly no (events reviewed as just seen, and resolve events, teach nothing);
- answered label requests: the operator's yes or no (skips are left out);
- labelled clips (manifest.py): a frame every `every_s` inside each interval, with its truth.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from streamwatch.config import Settings
from streamwatch.evaluation.manifest import LabelledClip, frames
from streamwatch.ingest.images import ImageRejected, decode_image
from streamwatch.store.db import Database
from streamwatch.store.events import EventFilter, EventStore
from streamwatch.store.labels import LabelStore
from streamwatch.store.windows import beside, split
from streamwatch.vocabulary import EventKind, Label, Verdict

PAGE = 500


@dataclass(frozen=True)
class Example:
    camera: str
    rule: str
    truth: bool
    source: str  # review | label | the manifest's path
    ref: str  # event id, label request id, or clip@seconds
    image: Image.Image  # the full frame (before any roi)
    vars: tuple[tuple[str, str], ...] = ()  # template variables a manifest gives
    frames: tuple[Image.Image, ...] = ()  # asked over several frames: those (the rule's region at model size)


def reviewed(store: EventStore, skipped: list[str]) -> Iterator[Example]:
    for verdict, truth in ((Verdict.CONFIRMED, True), (Verdict.FALSE_POSITIVE, False)):
        offset = 0
        while True:
            page = store.list(EventFilter(verdict=verdict), limit=PAGE, offset=offset)
            for event in page:
                if event.kind == EventKind.RESOLVED:
                    continue
                what = f"event {event.uid}"
                path = store.snapshot_path(event)
                image = _load(path, what, skipped)
                if image is not None:
                    assert path is not None
                    frames = _frames(path, event.window_frames, what, skipped)
                    yield Example(event.camera, event.rule, truth, "review", event.uid, image, frames=frames)
            if len(page) < PAGE:
                break
            offset += PAGE


def labelled(labels: LabelStore, skipped: list[str]) -> Iterator[Example]:
    offset = 0
    while True:
        page = labels.list(labelled=True, limit=PAGE, offset=offset)
        for item in page:
            if item.label in (Label.YES, Label.NO):
                what, path = f"label request {item.uid}", labels.frame_path(item)
                image = _load(path, what, skipped)
                if image is not None:
                    frames = _frames(path, item.window_frames, what, skipped)
                    truth = item.label == Label.YES
                    yield Example(item.camera, item.rule, truth, "label", item.uid, image, frames=frames)
        if len(page) < PAGE:
            break
        offset += PAGE


def from_clips(clips: Sequence[LabelledClip]) -> Iterator[Example]:
    for clip in clips:
        manifest = clip.manifest
        extra = tuple(sorted(manifest.vars.items()))
        for seconds, truth, pixels in frames(clip):
            image = Image.fromarray(pixels)
            yield Example(
                manifest.camera, manifest.rule, truth, str(clip.path), f"{manifest.clip}@{seconds:g}", image, extra
            )


def _load(path: Path | None, what: str, skipped: list[str]) -> Image.Image | None:
    if path is None or not path.is_file():
        skipped.append(f"{what}: its frame is gone (retention or the disk cap)")
        return None
    try:
        return decode_image(path)
    except ImageRejected as exc:
        skipped.append(f"{what}: {exc}")
        return None


def _frames(frame: Path, count: int | None, what: str, skipped: list[str]) -> tuple[Image.Image, ...]:
    """The frames a question over several frames was asked on, from the strip beside `frame`; () for a
    single-frame question, or when the strip is gone (the disk cap) or unreadable (said in `skipped`)."""
    if not count:
        return ()
    path = frame.parent / Path(beside(frame.name)).name
    if not path.is_file():
        return ()
    try:
        return split(decode_image(path), count)
    except (ImageRejected, ValueError) as exc:
        skipped.append(f"{what}: its {count} frames cannot be read: {exc}")
        return ()


def all_examples(
    settings: Settings, database: Database | None, clips: Sequence[LabelledClip], notes: list[str]
) -> Iterator[Example]:
    """Every labelled example, afresh (each reader sees the same ones, in the same order): the database's
    reviews and answered label requests unless it is None, then the labelled clips'; why a stored one
    could not be read goes to `notes`."""
    sources: list[Iterator[Example]] = [from_clips(clips)]
    if database is not None:
        folder = settings.path(settings.storage.snapshot_dir)
        labels = LabelStore(database, folder, max_pending=10**9, max_labelled=10**9)  # read here, never bounded
        sources = [reviewed(EventStore(database, folder), notes), labelled(labels, notes), *sources]
    return itertools.chain(*sources)


def with_shadows(examples: Iterator[Example], shadows: Mapping[str, Sequence[str]]) -> Iterator[Example]:
    """Each example, then the same frame for every shadow rule of its rule (`shadows`: live rule id ->
    its shadow rules' ids): a shadow rule is measured on exactly the live rule's labelled frames."""
    for example in examples:
        yield example
        for shadow in shadows.get(example.rule, ()):
            yield dataclasses.replace(example, rule=shadow)
