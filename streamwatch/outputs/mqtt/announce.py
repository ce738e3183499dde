"""What MQTT says on every (re)connect and whenever the rules change: Home Assistant discovery (and an
empty retained config for each entity it published before that no longer exists), every alert's
current state (ON or OFF, as the evaluator has it, restored states included), the count and choice
rules' current answers, and camera status."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from streamwatch.config import CameraConfig
from streamwatch.ingest.status import CameraStatus
from streamwatch.outputs.mqtt.discovery import Discovery
from streamwatch.outputs.mqtt.topics import Topics, mqtt_message
from streamwatch.outputs.mqtt.values import AnswerValues
from streamwatch.rules.loader import ActiveRules
from streamwatch.store.discovery import DiscoveryRecord
from streamwatch.store.message import Message


class Announcer:
    def __init__(
        self,
        topics: Topics,
        *,
        cameras: Callable[[], Sequence[CameraConfig]],
        rules: ActiveRules,
        is_open: Callable[[str, str], bool],
        statuses: Callable[[], list[CameraStatus]],
        discovery: bool,
        record: DiscoveryRecord | None = None,
        values: AnswerValues | None = None,
    ) -> None:
        self.topics, self.cameras, self.rules = topics, cameras, rules
        self.is_open, self.statuses, self.discovery = is_open, statuses, discovery
        self.record, self.values = record, values
        self.configs = Discovery(topics)

    def messages(self) -> list[Message]:
        configs: list[Message] = []
        states: list[Message] = []
        pairs: set[tuple[str, str]] = set()
        for camera in self.cameras():
            rules = self.rules.alerting_for_camera(camera)
            if self.discovery:
                configs += self.configs.messages(camera, rules)
            for rule in rules:
                on = self.is_open(camera.id, rule.id)
                states.append(mqtt_message(self.topics.state(camera.id, rule.id), b"ON" if on else b"OFF", retain=True))
                pairs.add((camera.id, rule.id))
        if self.values is not None:
            states += self.values.messages(pairs)
        stale = self.record.replace(message.address for message in configs) if self.record is not None else []
        clears = [mqtt_message(topic, b"", retain=True) for topic in stale]
        return clears + configs + states + [self.topics.status_message(status) for status in self.statuses()]
