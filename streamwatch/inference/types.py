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
    """One image (the newest frame) and one question, as a backend sees them; `frames`: earlier frames
    of the same camera, oldest first, for questions about several frames (the model sees `images`)."""

    image: Image.Image
    question: str
    frames: tuple[Image.Image, ...] = ()

    @property
    def images(self) -> tuple[Image.Image, ...]:
        """Every image of the prompt, oldest first (the newest, `image`, last)."""
        return (*self.frames, self.image)


@dataclass(frozen=True)
class Request:
    """A question about one frame (and maybe earlier ones), submitted by a producer (a camera, the ask
    command, the API)."""

    image: Image.Image
    question: str
    kind: AnswerKind = AnswerKind.YES_NO
    source: str = "default"  # the producer, for round-robin fairness; usually the camera id
    deadline: float = field(default_factory=lambda: time.monotonic() + 30.0)  # time.monotonic()
    max_new_tokens: int = 16
    submitted_at: float = field(default_factory=time.monotonic)
    frames: tuple[Image.Image, ...] = ()  # earlier frames, oldest first: a question over several frames

    @property
    def prompt(self) -> Prompt:
        return Prompt(self.image, self.question, self.frames)


@dataclass(frozen=True)
class Answer:
    """The model's answer. `confidence` is P(yes) for yes/no questions, None for generated text."""

    text: str
    confidence: float | None
    latency_s: float  # submit -> answer
    batch_size: int  # how many requests shared the forward pass
    model: str
    reused: bool = False  # the picture had not changed: the last answer stands, no model pass (change.py)
    tokens: int | None = None  # generated tokens (1 for a yes/no score); None where the backend does not say
