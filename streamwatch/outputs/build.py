"""The configured outputs, each with its own queue in the outbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import Counter

from streamwatch.config import Settings
from streamwatch.outputs.base import Output
from streamwatch.outputs.eventlog import EventLog
from streamwatch.outputs.mqtt.client import MqttOutput
from streamwatch.outputs.notify import NotifyOutput, sink_of
from streamwatch.store.db import Database
from streamwatch.store.events import committed_since, description_of
from streamwatch.store.message import Message
from streamwatch.store.outbox import Outbox


def build_outputs(
    settings: Settings,
    database: Database,
    *,
    owner: str,
    announcements: Callable[[], Sequence[Message]] = tuple,
    notifications: Counter | None = None,
    owns: Callable[[str], bool] = lambda _camera: True,
) -> list[Output]:
    """MQTT (`[mqtt]`, announcing `announcements` on every connect), the event log (`[event_log]`) and a
    notification target per URL of each `[[notify]]` (counted in `notifications`; its hourly limit rebuilt
    from the events of the cameras this instance `owns`)."""
    outputs: list[Output] = []
    if settings.mqtt.enabled:
        outbox = Outbox(database, owner=owner, sink=MqttOutput.name)
        outputs.append(MqttOutput(settings.mqtt, outbox, on_connect=announcements, instance=owner))
    if settings.event_log.enabled:
        outbox = Outbox(database, owner=owner, sink=EventLog.name)
        outputs.append(EventLog(settings.path(settings.event_log.path), outbox))
    for config in settings.notify:
        for index in range(len(config.urls)):
            target = f"{config.name}#{index + 1}"
            outputs.append(
                NotifyOutput(
                    config,
                    index,
                    Outbox(database, owner=owner, sink=sink_of(target)),
                    cameras=settings.cameras,
                    media_dir=settings.path(settings.storage.snapshot_dir),
                    public_url=settings.web.public_url,
                    counter=notifications,
                    history=lambda since: committed_since(database, since, owns),
                    description_of=lambda uid: description_of(database, uid),
                )
            )
    return outputs
