"""What the web layer needs from the running service (the Service implements it; tests may too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from streamwatch.inference.types import Answer, AnswerKind
from streamwatch.ingest.frame import Frame
from streamwatch.ingest.status import CameraStatus
from streamwatch.learning.jobs.runner import JobRunner
from streamwatch.learning.release.shadow import CandidateShadow
from streamwatch.metrics import Metrics
from streamwatch.pipeline.answer_log import LastAnswer
from streamwatch.store.events import EventStore
from streamwatch.store.labels import LabelStore


@dataclass(frozen=True)
class RuleView:
    id: str
    title: str
    severity: str
    answer_kind: str
    question: str  # the template
    cameras: list[str]  # ids of the cameras it applies to
    enabled: bool
    help: str
    last_answers: list[LastAnswer]
    measured: list[dict[str, Any]] = field(default_factory=list)  # the latest eval's figures, per camera
    threshold: float | None = None  # yes/no rules: P(yes) at which an answer alerts
    mode: str = "live"  # live | shadow (asked and stored, never alerts)
    shadows: str | None = None  # a shadow rule's live rule
    shadow_record: list[dict[str, Any]] = field(default_factory=list)  # its decisions beside the live rule's


class WebContext(Protocol):
    metrics: Metrics
    jobs: JobRunner | None  # eval and fine-tune jobs (None: this service runs none)
    candidate: CandidateShadow | None  # a fine-tune's adapter in shadow beside the live model

    @property
    def store(self) -> EventStore: ...

    @property
    def labels(self) -> LabelStore: ...

    def camera_status(self) -> list[CameraStatus]: ...

    def latest_frame(self, camera_id: str) -> Frame | None: ...

    def rule_views(self) -> list[RuleView]: ...

    async def ask(self, image: Image.Image, question: str, kind: AnswerKind) -> Answer: ...

    def image_side(self) -> int:
        """The longest side the model sees (model.max_image_side): uploads are shrunk to it at once."""

    def question_problem(self, question: str) -> str | None:
        """Why a question may not go to the model (empty, too long), or None."""

    def readiness(self) -> dict[str, str | None]:
        """Each check: None when it passes, else why not."""

    def degrading(self) -> frozenset[str]:
        """The checks whose failure leaves the service watching, degraded (an output, an edit not applied)."""

    def model_status(self) -> dict[str, Any]:
        """The model answering (id, adapter, when loaded) and its last reload's failure, if any."""
