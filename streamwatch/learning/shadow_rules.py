"""Shadow rules at work: each answer of a rule with mode = "shadow" is stored beside the live rule's
answer on the same frame (it never alerts, never reaches MQTT); a frame where the two decide otherwise
becomes a label request of the live rule, so that the operator's label settles which one was right."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from streamwatch.learning.labels import LabelCollector
from streamwatch.pipeline.decision import Decision
from streamwatch.rules.model import Rule
from streamwatch.store.shadow import NewShadowDecision, ShadowStore
from streamwatch.vocabulary import LabelReason

log = logging.getLogger(__name__)


class ShadowRecorder:
    name = "the shadow rules' records"

    def __init__(self, store: ShadowStore, labels: LabelCollector | None = None) -> None:
        self.store, self.labels = store, labels

    async def take(self, decisions: Sequence[Decision]) -> None:
        """A decision sink: each shadow rule's decision, beside its live rule's on the same frame."""
        by_id = {decision.rule.id: decision for decision in decisions}
        for decision in by_id.values():
            if not decision.live:
                live = by_id.get(decision.rule.shadows or "")
                await self.record(decision, live if live is not None and live.live else None)

    async def record(self, shadow: Decision, live: Decision | None) -> None:
        """Store the shadow rule's decision (with the live one's, when the live rule was asked on this
        frame too); a failure is logged, never raised: a shadow rule must not stop a camera."""
        camera = shadow.camera
        decision = NewShadowDecision(
            at=datetime.fromtimestamp(shadow.frame_at, UTC),
            camera=camera.id,
            rule=shadow.rule.id,
            shadows=shadow.rule.shadows,
            answer=shadow.answer.text,
            p_yes=shadow.answer.confidence,
            alert=shadow.alert,
            live_answer=None if live is None else live.answer.text,
            live_p_yes=None if live is None else live.answer.confidence,
            live_alert=None if live is None else live.alert,
        )
        try:
            await asyncio.to_thread(self.store.record, decision)
        except Exception:
            log.exception("camera %s shadow rule %s: could not store its decision", camera.id, shadow.rule.id)
        if live is not None and live.alert != shadow.alert and self.labels is not None:
            await self.labels.offer(
                camera,
                live.rule,
                live.question,
                live.answer,
                live.image,
                live.frame_at,
                reason=LabelReason.SHADOW,
                window=live.window,
            )


def with_shadows(due: list[Rule], rules: list[Rule]) -> list[Rule]:
    """The rules to ask on a frame: those due, where a shadow rule whose live rule is among the camera's
    rules goes with it (asked on exactly its frames), and is not asked on its own."""
    live_here = {rule.id for rule in rules if rule.live}
    due_ids = {rule.id for rule in due}
    paired = [rule for rule in rules if rule.shadows in live_here and rule.shadows in due_ids]
    return [rule for rule in due if rule.shadows not in live_here] + paired
