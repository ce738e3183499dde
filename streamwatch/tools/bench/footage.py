"""Labelled footage (footage/labels/*.toml, footage/README.md): a clip, named regions and the seconds
at which something changed in each; and the change gate replayed on a region, second by second,
against those labels: how many samples reused an answer, and how many of those fell on a change."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamwatch.config.tomlfile import load_model
from streamwatch.inference.types import Answer
from streamwatch.pipeline.change import ChangeGate, Verdict, view


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Seconds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]


class Region(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    box: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=4, max_length=4)]
    changes: list[Seconds] = Field(default_factory=list, max_length=10_000)

    @model_validator(mode="after")
    def _ordered(self) -> Region:
        x0, y0, x1, y1 = self.box
        if x1 <= x0 or y1 <= y0:
            raise ValueError("box is x0, y0, x1, y1 with x1 > x0 and y1 > y0")
        if any(end < start for start, end in self.changes):
            raise ValueError("each change is [first second, last second], the last not before the first")
        return self

    def changed(self, second: int) -> bool:
        return any(start <= second <= end for start, end in self.changes)


class LabelledClip(_Strict):
    clip: str  # relative to the labels file
    sample_s: float = Field(gt=0, le=60)
    seconds: int = Field(ge=1, le=100_000)
    regions: list[Region] = Field(min_length=1, max_length=100)


@dataclass(frozen=True)
class Footage:
    labels: LabelledClip
    clip: Path
    name: str


def load_footage(path: Path) -> Footage:
    """The labels file at `path` (a DataFileError names its line and field) and its clip's path."""
    labels, _lines = load_model(LabelledClip, path, env=False)
    return Footage(labels, (path.parent / labels.clip).resolve(), path.stem)


def clip_samples(clip: Path, every_s: float) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds into the clip, RGB frame) every `every_s` of the clip, as a camera samples it."""
    import av

    due = 0.0
    with av.open(str(clip)) as container:
        for frame in container.decode(container.streams.video[0]):
            if frame.time is not None and float(frame.time) >= due:
                yield float(frame.time), frame.to_ndarray(format="rgb24")
                due += every_s


def crop(frame: np.ndarray, box: Sequence[int]) -> Image.Image:
    x0, y0, x1, y1 = box
    return Image.fromarray(np.ascontiguousarray(frame[y0:y1, x0:x1]))


@dataclass
class RegionRun:
    """The gate on one region: per sample its verdict and whether the labels say changed."""

    region: str
    verdicts: list[Verdict]
    changed: list[bool]

    @property
    def reused(self) -> list[bool]:
        return [verdict.answer is not None for verdict in self.verdicts]

    @property
    def saved(self) -> int:
        return sum(self.reused)

    @property
    def missed(self) -> list[int]:
        """The samples (seconds) at which an answer was reused across a labelled change."""
        return [second for second, (r, c) in enumerate(zip(self.reused, self.changed, strict=True)) if r and c]

    @property
    def still(self) -> int:
        return self.changed.count(False)


def replay_gate(
    frames: Sequence[np.ndarray], region: Region, *, area: float, max_reuse_s: float, sample_s: float
) -> RegionRun:
    """The shipped gate on `region` of `frames` (one per sample): asked at the first sample, then reused
    while it says the picture stands still."""
    gate = ChangeGate()
    answer = Answer("no", 0.0, 0.0, 1, "replay")
    run = RegionRun(region.id, [], [])
    for index, frame in enumerate(frames):
        now, at = view(crop(frame, region.box)), index * sample_s
        verdict = gate.judge(region.id, "q", now, at, area=area, max_reuse_s=max_reuse_s)
        if verdict.answer is None:
            gate.remember(region.id, "q", now, at, answer)
        run.verdicts.append(verdict)
        run.changed.append(region.changed(index))
    return run
