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

from streamwatch.config.tomlfile import Loc, load_model, problem
from streamwatch.errors import DataFileError

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


def frames(
    labelled: LabelledClip, before: tuple[float, ...] = ()
) -> Iterator[tuple[float, bool, np.ndarray, tuple[np.ndarray, ...]]]:
    """(seconds, truth, RGB frame, earlier frames) every `every_s` inside each interval; `before`: how
    many seconds before each of those its earlier frames were taken, oldest first (a question over
    several frames); none where the clip does not reach back that far. A DataFileError names an
    interval past the clip's end, or a clip that cannot be read."""
    manifest = labelled.manifest
    wanted = sorted(
        (interval.from_s + k * manifest.every_s, interval.truth == "yes", index)
        for index, interval in enumerate(manifest.intervals)
        for k in range(int((interval.to_s - interval.from_s) / manifest.every_s) + 1)
    )
    reach = max(before, default=0.0)
    needed = sorted({round(t - b, 6) for t, _truth, _i in wanted for b in before if t - reach >= 0})
    kept: dict[float, np.ndarray] = {}  # the earlier frames still to be used, by the time they stand for
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
            position = early = 0
            for frame in container.decode(stream):
                at = float(frame.time or 0.0)
                pixels: np.ndarray | None = None
                while early < len(needed) and needed[early] <= at:
                    pixels = frame.to_ndarray(format="rgb24") if pixels is None else pixels
                    kept[needed[early]] = pixels
                    early += 1
                while position < len(wanted) and wanted[position][0] <= at:
                    seconds, truth, _index = wanted[position]
                    pixels = frame.to_ndarray(format="rgb24") if pixels is None else pixels
                    earlier = tuple(kept[round(seconds - b, 6)] for b in before) if seconds - reach >= 0 else ()
                    yield seconds, truth, pixels, earlier
                    position += 1
                    upcoming = wanted[position][0] - reach if position < len(wanted) else float("inf")
                    for time in [time for time in kept if time < upcoming - 1e-6]:
                        del kept[time]  # no later sample reaches back to it
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise DataFileError([labelled.problem(("clip",), f"cannot read {labelled.clip}: {exc}")]) from None
