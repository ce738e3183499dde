"""The current answer of each count and choice rule per camera, for Home Assistant's sensors: published
(retained) when it changes, and again on every (re)connect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from streamwatch.outputs.topics import Topics, mqtt_message
from streamwatch.rules.model import Rule
from streamwatch.store.message import Message


class AnswerValues:
    def __init__(self, topics: Topics, publish: Callable[[Message], Awaitable[bool]]) -> None:
        self.topics, self.publish = topics, publish
        self.latest: dict[tuple[str, str], str] = {}

    async def update(self, camera: str, rule: Rule, text: str) -> None:
        """A new answer of `rule` on `camera`: published when its value (a count, a choice) changed."""
        if rule.answer not in ("count", "choice"):
            return
        value = rule.value_of(text)
        if value is None or self.latest.get((camera, rule.id)) == value:
            return
        self.latest[(camera, rule.id)] = value
        await self.publish(self.message(camera, rule.id, value))

    def message(self, camera: str, rule: str, value: str) -> Message:
        return mqtt_message(self.topics.value(camera, rule), value.encode(), retain=True)

    def messages(self, pairs: set[tuple[str, str]]) -> list[Message]:
        """The values known for these camera x rule pairs (what a reconnect says again)."""
        return [
            self.message(camera, rule, value)
            for (camera, rule), value in self.latest.items()
            if (camera, rule) in pairs
        ]
