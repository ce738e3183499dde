"""One answered rule on one frame (`Decision`), and where decisions go (`DecisionSink`, `Sinks`).

The sampler decides when and what to ask; what follows from an answer is the business of sinks, each
handed the decisions made on one frame: the alert pipeline first (it settles the alert transition,
which the others then see on the decision), then the latest-answer view, the metrics, label requests,
answer values, shadow records and the candidate adapter's shadow. A sink that fails is logged and the
others still get the decisions: no sink can stop a camera."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from streamwatch.config import CameraConfig
from streamwatch.inference.types import Answer
from streamwatch.pipeline.change import Verdict
from streamwatch.rules.model import Rule

log = logging.getLogger(__name__)

NOT_GATED = Verdict(None, "off")


@dataclass(frozen=True)
class Decision:
    """One rule's answer on one frame, and everything that followed from it on the way."""

    camera: CameraConfig
    rule: Rule
    question: str  # as asked: the rule's prompt for this camera
    answer: Answer  # `answer.reused`: the previous answer stood, no model pass
    alert: bool  # whether the answer meets the rule's condition
    frame_at: float  # wall clock when the frame left the decoder
    frame_seq: int  # per camera worker
    frame_pts: float | None  # seconds into the stream or file, when known
    image: Image.Image  # the whole frame (the region is cropped from it)
    window: tuple[Image.Image, ...] = ()  # a question over several frames: the frames it was asked on
    gate: Verdict = NOT_GATED  # why the change gate asked the model or let the last answer stand
    transition: str | None = None  # open / update / resolved, when this answer caused an alert event
    decided_at: float = field(default_factory=time.time)  # wall clock

    @property
    def live(self) -> bool:
        """A live rule's decision (a shadow rule's is stored, never alerted)."""
        return self.rule.live


class DecisionSink(Protocol):
    """Takes the decisions made on one frame (several rules, asked together)."""

    name: str  # for the log line when it fails

    async def take(self, decisions: Sequence[Decision]) -> None: ...


Transitions = Callable[[Sequence[Decision]], Awaitable[list[Decision]]]


class Sinks:
    """Hands each frame's decisions to the alert pipeline, then to every sink in order."""

    def __init__(self, sinks: Sequence[DecisionSink], transitions: Transitions | None = None) -> None:
        self.sinks = tuple(sinks)
        self.transitions = transitions  # the alert pipeline: the decisions with their alert transitions

    async def take(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        first = decisions[0]  # names the camera and frame when something fails
        if self.transitions is not None:
            try:
                decisions = await self.transitions(decisions)
            except Exception:
                log.exception(
                    "camera %s frame %d: the alert pipeline failed; its decisions go on without an alert event",
                    first.camera.id,
                    first.frame_seq,
                )
        for sink in self.sinks:
            try:
                await sink.take(decisions)
            except Exception:
                log.exception(
                    "camera %s frame %d: %s could not take the decisions; going on",
                    first.camera.id,
                    first.frame_seq,
                    sink.name,
                )
