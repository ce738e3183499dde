"""What the web UI and API read of the running service (streamwatch.web.context.WebContext)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from PIL import Image

from streamwatch.inference.engine import Engine
from streamwatch.inference.reload import ModelState
from streamwatch.inference.types import Answer, AnswerKind
from streamwatch.ingest.cameras import Cameras
from streamwatch.ingest.frame import Frame
from streamwatch.ingest.status import CameraStatus
from streamwatch.learning.jobs.runner import JobRunner
from streamwatch.learning.release.shadow import CandidateShadow
from streamwatch.metrics import Metrics
from streamwatch.pipeline.answer_log import AnswerLog
from streamwatch.rules.loader import ActiveRules
from streamwatch.store import measures
from streamwatch.store.events import EventStore
from streamwatch.store.labels import LabelStore
from streamwatch.store.shadow import ShadowStore
from streamwatch.web.context import RuleView

Check = Callable[[], str | None]  # None when it works, else why not
ByRule = dict[str, list[dict[str, Any]]]  # figures per rule id: one JSON-ready dict per camera
MEASURES_TTL_S = 30.0
log = logging.getLogger(__name__)


class ServiceView:
    def __init__(
        self,
        *,
        store: EventStore,
        cameras: Cameras,
        rules: ActiveRules,
        answers: AnswerLog,
        engine: Engine,
        metrics: Metrics,
        checks: Mapping[str, Check],
        degrading: Collection[str],
        labels: LabelStore,
        model_state: ModelState,
        jobs: JobRunner | None = None,
        candidate: CandidateShadow | None = None,
    ) -> None:
        self.store, self.cameras = store, cameras
        self.labels = labels
        self._read: dict[str, tuple[float, ByRule]] = {}  # _by_rule's, by what
        self.rules, self.answers, self.engine, self.metrics = rules, answers, engine, metrics
        self.checks, self._degrading = checks, frozenset(degrading)
        self.model_state = model_state
        self.jobs = jobs
        self.candidate = candidate  # a candidate adapter in shadow (release/shadow.py)

    def camera_status(self) -> list[CameraStatus]:
        return self.cameras.statuses()

    def latest_frame(self, camera_id: str) -> Frame | None:
        return self.cameras.latest(camera_id)

    def rule_views(self) -> list[RuleView]:
        views = []
        measured = self._measures()
        shadowed = self._shadow_records() if any(not rule.live for rule in self.rules.current.rules) else {}
        for rule in self.rules.current.rules:
            cameras = [c.id for c in self.cameras.configs() if rule.applies_to(c)]
            answers = [self.answers.latest[(c, rule.id)] for c in cameras if (c, rule.id) in self.answers.latest]
            views.append(
                RuleView(
                    rule.id,
                    rule.title,
                    rule.severity,
                    rule.answer,
                    rule.question,
                    cameras,
                    rule.enabled,
                    rule.help,
                    answers,
                    measured.get(rule.id, []),
                    rule.threshold if rule.answer == "yes_no" else None,
                    rule.mode,
                    rule.shadows,
                    shadowed.get(rule.id, []),
                )
            )
        return views

    def _measures(self) -> ByRule:
        """The latest eval figures per rule (they change when eval runs)."""
        return self._by_rule("the rules' measured figures", lambda: measures.load(self.store.db))

    def _shadow_records(self) -> ByRule:
        """Per shadow rule, its decisions beside the live rule's per camera (a count over the stored ones)."""

        def read() -> ByRule:
            found: ByRule = {}
            for row in ShadowStore(self.store.db).agreement():
                found.setdefault(row["rule"], []).append(row)
            return found

        return self._by_rule("the shadow rules' decisions", read)

    def _by_rule(
        self, what: str, read: Callable[[], dict[str, list[dict[str, Any]]]]
    ) -> dict[str, list[dict[str, Any]]]:
        """`read()` (figures from the database, by rule id) at most every MEASURES_TTL_S; a failed read is
        logged and shows nothing, and is tried again next time."""
        now = time.monotonic()
        cached = self._read.get(what)
        if cached is None or now - cached[0] > MEASURES_TTL_S:
            try:
                cached = self._read[what] = (now, read())
            except Exception:
                log.exception("could not read %s", what)
                return {}
        return cached[1]

    async def ask(self, image: Image.Image, question: str, kind: AnswerKind) -> Answer:
        """A one-off question (web/API) through the same shared queue as the cameras."""
        return await self.engine.ask("api", question, image, kind, self.engine.settings.model.max_new_tokens)

    def image_side(self) -> int:
        return self.engine.settings.model.max_image_side

    def question_problem(self, question: str) -> str | None:
        return self.engine.limits.problem(question)

    def readiness(self) -> dict[str, str | None]:
        """What works now, each None when it does or the reason when it does not: the model answering
        within model.stall_timeout_s, the database writable, every background loop running (without
        these it cannot watch); each output delivering, config.toml and rules/ applied as on disk."""
        return {name: check() for name, check in self.checks.items()}

    def degrading(self) -> frozenset[str]:
        return self._degrading

    def model_status(self) -> dict[str, Any]:
        return self.model_state.as_dict()
