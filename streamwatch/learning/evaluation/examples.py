"""Labelled examples, produced one at a time (a frame is only in memory while it is scored):

- reviewed events of yes/no rules: an alert marked *confirmed* was truly yes on its frame, one marked
  *false positive* truly no (events reviewed as just seen, and resolve events, teach nothing);
- answered label requests: the operator's yes or no (skips are left out);
- labelled clips (manifest.py): a frame every `every_s` inside each interval, with its truth.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from streamwatch.config import Settings
from streamwatch.errors import ImageRejected
from streamwatch.ingest.images import decode_image
from streamwatch.ingest.preprocess import crop_roi, fit_longest_side
from streamwatch.learning.evaluation.manifest import LabelledClip, frames
from streamwatch.pipeline.frame_history import Shape
from streamwatch.rules.model import Rule
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


TRAINED = "trained.json"  # beside an adapter: the labelled examples it was trained on (example_key each)


def example_key(example: Example) -> str:
    """A short, stable name of a labelled example (where it came from), as `TRAINED` lists it."""
    return hashlib.sha256(f"{example.source}\0{example.ref}".encode()).hexdigest()[:16]


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


def from_clips(
    clips: Sequence[LabelledClip], rules: Mapping[str, Rule] | None = None, max_image_side: int = 0
) -> Iterator[Example]:
    """Each clip's labelled frames; for a rule over several frames (`rules`) each with the frames before
    it that the service would have asked about (the rule's region at `max_image_side`, as kept live)."""
    for clip in clips:
        manifest = clip.manifest
        extra = tuple(sorted(manifest.vars.items()))
        rule = (rules or {}).get(manifest.rule)
        shape = Shape.of(rule) if rule is not None else None
        before = tuple(shape.spacing_s * k for k in range(shape.frames - 1, 0, -1)) if shape else ()
        for seconds, truth, pixels, earlier in frames(clip, before):
            image = Image.fromarray(pixels)
            window: tuple[Image.Image, ...] = ()
            if shape is not None and earlier:
                window = tuple(
                    fit_longest_side(crop_roi(Image.fromarray(p), shape.roi), max_image_side)
                    for p in (*earlier, pixels)
                )
            ref = f"{manifest.clip}@{seconds:g}"
            yield Example(manifest.camera, manifest.rule, truth, str(clip.path), ref, image, extra, window)


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
    settings: Settings,
    database: Database | None,
    clips: Sequence[LabelledClip],
    notes: list[str],
    rules: Mapping[str, Rule] | None = None,
) -> Iterator[Example]:
    """Every labelled example, afresh (each reader sees the same ones, in the same order): the database's
    reviews and answered label requests unless it is None, then the labelled clips' (with the frames
    before each that `rules` over several frames ask about); why a stored one could not be read goes to
    `notes`."""
    sources: list[Iterator[Example]] = [from_clips(clips, rules, settings.model.max_image_side)]
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
