"""Home Assistant MQTT discovery: what a camera's device shows in Home Assistant.

Per camera × rule (rules that alert): a `binary_sensor` (the alert, ON while open), an `image` (the
last alert snapshot), an `event` (each alert transition: open, update, resolved) and, for count and
choice rules, a `sensor` with the current answer. Per camera: `sensor`s of its status (state, frames
a second). All are grouped under the camera's device, carry an `origin` block and `default_entity_id`
(Home Assistant 2025.10 and later; `object_id`, which older versions read, is kept beside it), and
are unavailable while the instance (or its shard) is offline.
"""

from __future__ import annotations

import json
import re
from typing import Any

from streamwatch import __version__
from streamwatch.config import CameraConfig
from streamwatch.outputs.mqtt.topics import Topics, mqtt_message
from streamwatch.rules.model import Rule
from streamwatch.store.message import Message
from streamwatch.vocabulary import EventKind, Severity

ORIGIN = {"name": "streamwatch", "sw_version": __version__}


def entity_slug(text: str) -> str:
    """An entity id's object part: lowercase letters, digits and single underscores."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", text.lower())).strip("_")


class Discovery:
    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self.base = topics.prefix.replace("/", "_")

    def topic(self, platform: str, object_id: str) -> str:
        return f"{self.topics.ha_prefix}/{platform}/{object_id}/config"

    def messages(self, camera: CameraConfig, rules: list[Rule]) -> list[Message]:
        """Every discovery config of the camera's device (retained)."""
        configs = [config for rule in rules for config in self.rule_configs(camera, rule)]
        configs += self.camera_configs(camera)
        return [mqtt_message(topic, json.dumps(config).encode(), retain=True) for topic, config in configs]

    def _entity(self, platform: str, camera: CameraConfig, object_id: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": object_id,
            "object_id": object_id,
            "default_entity_id": f"{platform}.{entity_slug(object_id)}",
            "availability_topic": self.topics.available,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {
                "identifiers": [f"{self.base}_{camera.id}"],
                "name": camera.display_name,
                "manufacturer": "streamwatch",
                "model": "VLM camera monitor",
                "sw_version": __version__,
            },
            "origin": ORIGIN,
        }

    def rule_configs(self, camera: CameraConfig, rule: Rule) -> list[tuple[str, dict[str, Any]]]:
        base = f"{self.base}_{camera.id}_{rule.id}"
        alert = self._entity("binary_sensor", camera, base, rule.title) | {
            "state_topic": self.topics.state(camera.id, rule.id),
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "safety" if rule.severity is Severity.CRITICAL else "problem",
        }
        image = self._entity("image", camera, f"{base}_snapshot", f"{rule.title} snapshot") | {
            "image_topic": self.topics.snapshot(camera.id, rule.id),
            "content_type": "image/jpeg",
        }
        event = self._entity("event", camera, f"{base}_alert", f"{rule.title} alert") | {
            "state_topic": self.topics.alert_event(camera.id, rule.id),
            "event_types": [kind.value for kind in EventKind],
        }
        configs = [
            (self.topic("binary_sensor", base), alert),
            (self.topic("image", f"{base}_snapshot"), image),
            (self.topic("event", f"{base}_alert"), event),
        ]
        if rule.answer in ("count", "choice"):
            value = self._entity("sensor", camera, f"{base}_value", f"{rule.title} answer") | {
                "state_topic": self.topics.value(camera.id, rule.id),
            }
            if rule.answer == "count":
                value |= {"state_class": "measurement"}
            else:
                value |= {"device_class": "enum", "options": [choice.lower() for choice in rule.choices]}
            configs.append((self.topic("sensor", f"{base}_value"), value))
        return configs

    def camera_configs(self, camera: CameraConfig) -> list[tuple[str, dict[str, Any]]]:
        base = f"{self.base}_{camera.id}_camera"
        status = self.topics.status(camera.id)
        state = self._entity("sensor", camera, f"{base}_state", "Camera state") | {
            "state_topic": status,
            "value_template": "{{ value_json.state }}",
            "entity_category": "diagnostic",
        }
        fps = self._entity("sensor", camera, f"{base}_fps", "Frames decoded per second") | {
            "state_topic": status,
            "value_template": "{{ value_json.fps | round(1) }}",
            "unit_of_measurement": "fps",
            "state_class": "measurement",
            "entity_category": "diagnostic",
        }
        return [(self.topic("sensor", f"{base}_state"), state), (self.topic("sensor", f"{base}_fps"), fps)]
