"""The configured outputs, each with its own queue in the outbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from streamwatch.config import Settings
from streamwatch.outputs.base import Output
from streamwatch.outputs.eventlog import EventLog
from streamwatch.outputs.message import Message
from streamwatch.outputs.mqtt import MqttOutput
from streamwatch.store.db import Database
from streamwatch.store.outbox import Outbox


def build_outputs(
    settings: Settings, database: Database, *, owner: str, announcements: Callable[[], Sequence[Message]] = tuple
) -> list[Output]:
    """MQTT (`[mqtt]`, announcing `announcements` on every connect) and the event log (`[event_log]`)."""
    outputs: list[Output] = []
    if settings.mqtt.enabled:
        outbox = Outbox(database, owner=owner, sink=MqttOutput.name)
        outputs.append(MqttOutput(settings.mqtt, outbox, on_connect=announcements, instance=owner))
    if settings.event_log.enabled:
        outbox = Outbox(database, owner=owner, sink=EventLog.name)
        outputs.append(EventLog(settings.path(settings.event_log.path), outbox))
    return outputs
