"""The current answer of each count and choice rule per camera, for Home Assistant's sensors: published
(retained) when it changes, and again on every (re)connect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from streamwatch.outputs.mqtt.topics import Topics, mqtt_message
from streamwatch.pipeline.decision import Decision
from streamwatch.rules.model import Rule
from streamwatch.store.message import Message


class AnswerValues:
    """The latest value of each count and choice rule per camera (what a reconnect says again)."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self.latest: dict[tuple[str, str], str] = {}

    def update(self, camera: str, rule: Rule, text: str) -> Message | None:
        """A new answer of `rule` on `camera`: its message when its value (a count, a choice) changed."""
        if rule.answer not in ("count", "choice"):
            return None
        value = rule.value_of(text)
        if value is None or self.latest.get((camera, rule.id)) == value:
            return None
        self.latest[(camera, rule.id)] = value
        return self.message(camera, rule.id, value)

    def message(self, camera: str, rule: str, value: str) -> Message:
        return mqtt_message(self.topics.value(camera, rule), value.encode(), retain=True)

    def messages(self, pairs: set[tuple[str, str]]) -> list[Message]:
        """The values known for these camera x rule pairs (what a reconnect says again)."""
        return [
            self.message(camera, rule, value)
            for (camera, rule), value in self.latest.items()
            if (camera, rule) in pairs
        ]


class PublishedValues:
    """A decision sink: each live count or choice rule's value, published when it changed."""

    name = "the answer values"

    def __init__(self, values: AnswerValues, publish: Callable[[Message], Awaitable[bool]]) -> None:
        self.values, self.publish = values, publish

    async def take(self, decisions: Sequence[Decision]) -> None:
        for decision in decisions:
            if decision.live:
                message = self.values.update(decision.camera.id, decision.rule, decision.answer.text)
                if message is not None:
                    await self.publish(message)
