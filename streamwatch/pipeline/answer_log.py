"""The latest answer per camera x rule (the web UI and /api/rules show them), how many decisions were
made, and each decision's DEBUG line: a decision sink."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from streamwatch.pipeline.decision import Decision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LastAnswer:
    """A rule's latest answer on a camera, as the web UI and /api/rules show it."""

    camera: str
    answer: str
    confidence: float | None
    alert: bool
    at: float  # wall clock
    reused: bool = False  # the picture had not changed: the previous answer stood (no model pass)
    gate: str = "off"  # why the change gate reused or asked (change.Verdict.why)
    gate_area_px: float | None = None  # the largest changed patch it saw, source pixels
    gate_noise: float | None = None  # the picture noise it assumed, of 255


@dataclass
class AnswerLog:
    """The latest answer per camera x rule and how many decisions were made."""

    latest: dict[tuple[str, str], LastAnswer] = field(default_factory=dict)
    decisions: int = 0
    reused: int = 0  # of those, answers that stood while the picture did (no model pass)
    name: str = "the answer log"

    async def take(self, decisions: Sequence[Decision]) -> None:
        for decision in decisions:
            answer = decision.answer
            self.decisions += 1
            self.reused += answer.reused
            self.latest[(decision.camera.id, decision.rule.id)] = LastAnswer(
                decision.camera.id,
                answer.text,
                answer.confidence,
                decision.alert,
                decision.decided_at,
                answer.reused,
                *decision.gate.seen(),
            )
            log.debug(
                "camera=%s rule=%s answer=%r p_yes=%s alert=%s latency=%.2fs batch=%d %s%s",
                decision.camera.id,
                decision.rule.id,
                answer.text,
                "-" if answer.confidence is None else f"{answer.confidence:.3f}",
                decision.alert,
                answer.latency_s,
                answer.batch_size,
                decision.gate.describe(),
                (" reused" if answer.reused else "") + ("" if decision.live else " shadow"),
            )
