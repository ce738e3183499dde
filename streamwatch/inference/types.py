"""What goes into the inference queue and what comes back."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from PIL import Image


class AnswerKind(enum.StrEnum):
    """How a question is answered: one scoring pass (yes/no) or a short greedy generation."""

    YES_NO = "yes_no"
    GENERATE = "generate"


@dataclass(frozen=True)
class Prompt:
    """One image and one question, as a backend sees them."""

    image: Image.Image
    question: str


@dataclass(frozen=True)
class Request:
    """A question about one frame, submitted by a producer (a camera, the ask command, the API)."""

    image: Image.Image
    question: str
    kind: AnswerKind = AnswerKind.YES_NO
    source: str = "default"  # the producer, for round-robin fairness; usually the camera id
    deadline: float = field(default_factory=lambda: time.monotonic() + 30.0)  # time.monotonic()
    max_new_tokens: int = 16
    submitted_at: float = field(default_factory=time.monotonic)

    @property
    def prompt(self) -> Prompt:
        return Prompt(self.image, self.question)


@dataclass(frozen=True)
class Answer:
    """The model's answer. `confidence` is P(yes) for yes/no questions, None for generated text."""

    text: str
    confidence: float | None
    latency_s: float  # submit -> answer
    batch_size: int  # how many requests shared the forward pass
    model: str
    reused: bool = False  # the picture had not changed: the last answer stands, no model pass (change.py)


class InferenceError(RuntimeError):
    """A model call failed for this request (the service log says why); other requests are unaffected."""


class DroppedError(Exception):
    """A request the queue did not answer; `reason` says why (deadline, overflow, shutdown)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"request dropped ({reason}){': ' + detail if detail else ''}")
        self.reason = reason
