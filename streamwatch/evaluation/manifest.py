"""Labelled clips brought by the user: a small TOML file per clip says which camera it is from, which
rule it is for, and over which time intervals the rule's answer is truly yes or no.

    clip = "gate-2026-11-20.mp4"       # relative to this file
    camera = "gate"                    # its variables render the question ({location}, ...)
    rule = "fence-climb"               # a yes/no rule
    every_s = 1.0                      # a frame this often inside the intervals
    [vars]                             # optional: more or other template variables
    location = "the north fence"
    [[intervals]]
    from_s = 0
    to_s = 12.5
    truth = "no"

Every problem is reported as file:line: field: message, the clip's length included (checked when it
is read). At most `MAX_INTERVALS` intervals and `MAX_SAMPLES` frames a manifest.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from streamwatch.tomlfile import DataFileError, Loc, load_model, problem

MAX_INTERVALS = 1000
MAX_SAMPLES = 10_000


class Interval(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    from_s: float = Field(ge=0, description="Seconds into the clip.")
    to_s: float = Field(gt=0, description="Seconds into the clip (after from_s).")
    truth: Literal["yes", "no"]

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if self.to_s <= self.from_s:
            raise ValueError(f"to_s ({self.to_s:g}) must be after from_s ({self.from_s:g})")
        return self


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clip: Path
    camera: str = Field(min_length=1)
    rule: str = Field(min_length=1)
    every_s: float = Field(1.0, ge=0.04, le=3600)
    vars: dict[str, str] = Field(default_factory=dict)
    intervals: list[Interval] = Field(min_length=1, max_length=MAX_INTERVALS)

    @field_validator("intervals")
    @classmethod
    def _apart(cls, intervals: list[Interval], info: ValidationInfo) -> list[Interval]:
        ordered = sorted(intervals, key=lambda i: i.from_s)
        for before, after in itertools.pairwise(ordered):
            if after.from_s < before.to_s:
                raise ValueError(
                    f"intervals overlap: {before.from_s:g}-{before.to_s:g} s and {after.from_s:g}-{after.to_s:g} s"
                )
        every = info.data.get("every_s")
        if every:
            samples = sum(int((i.to_s - i.from_s) / every) + 1 for i in intervals)
            if samples > MAX_SAMPLES:
                raise ValueError(f"{samples} frames at every_s = {every:g}; at most {MAX_SAMPLES} (raise every_s)")
        return intervals


@dataclass(frozen=True)
class LabelledClip:
    path: Path  # the manifest
    manifest: Manifest
    lines: dict[Loc, int]

    @property
    def clip(self) -> Path:
        return self.manifest.clip if self.manifest.clip.is_absolute() else self.path.parent / self.manifest.clip

    def problem(self, loc: Loc, message: str) -> str:
        return problem(self.path, self.lines, loc, message)


def load_manifest(path: Path) -> LabelledClip:
    manifest, lines = load_model(Manifest, path, env=False)
    labelled = LabelledClip(path, manifest, lines)
    if not labelled.clip.is_file():
        raise DataFileError([labelled.problem(("clip",), f"no such file: {labelled.clip}")])
    return labelled


def frames(labelled: LabelledClip) -> Iterator[tuple[float, bool, np.ndarray]]:
    """(seconds, truth, RGB frame) every `every_s` inside each interval; a DataFileError names an
    interval past the clip's end, or a clip that cannot be read."""
    manifest = labelled.manifest
    wanted = sorted(
        (interval.from_s + k * manifest.every_s, interval.truth == "yes", index)
        for index, interval in enumerate(manifest.intervals)
        for k in range(int((interval.to_s - interval.from_s) / manifest.every_s) + 1)
    )
    try:
        with av.open(str(labelled.clip)) as container:
            stream = container.streams.video[0]
            length = float(stream.duration * stream.time_base) if stream.duration else None
            if length is None and container.duration:
                length = container.duration / 1e6
            for index, interval in enumerate(manifest.intervals):
                if length is not None and interval.to_s > length + 0.5:
                    raise DataFileError(
                        [
                            labelled.problem(
                                ("intervals", index, "to_s"),
                                f"the interval ends at {interval.to_s:g} s but the clip lasts {length:.1f} s",
                            )
                        ]
                    )
            position = 0
            for frame in container.decode(stream):
                at = float(frame.time or 0.0)
                while position < len(wanted) and wanted[position][0] <= at:
                    seconds, truth, _index = wanted[position]
                    yield seconds, truth, frame.to_ndarray(format="rgb24")
                    position += 1
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise DataFileError([labelled.problem(("clip",), f"cannot read {labelled.clip}: {exc}")]) from None
