"""What MQTT says on every (re)connect and whenever the rules change: Home Assistant discovery, every
alert's current state (ON or OFF, as the evaluator has it, restored states included) and camera status."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from streamwatch.config import CameraConfig
from streamwatch.ingest.status import CameraStatus
from streamwatch.outputs.message import Message
from streamwatch.outputs.topics import Topics
from streamwatch.rules.loader import ActiveRules


class Announcer:
    def __init__(
        self,
        topics: Topics,
        *,
        cameras: Sequence[CameraConfig],
        rules: ActiveRules,
        is_open: Callable[[str, str], bool],
        statuses: Callable[[], list[CameraStatus]],
        discovery: bool,
    ) -> None:
        self.topics, self.cameras, self.rules = topics, cameras, rules
        self.is_open, self.statuses, self.discovery = is_open, statuses, discovery

    def messages(self) -> list[Message]:
        pairs = [(c, r, self.is_open(c.id, r.id)) for c in self.cameras for r in self.rules.alerting_for_camera(c)]
        return self.topics.announcements(pairs, self.statuses(), discovery=self.discovery)
