"""Home Assistant's MQTT discovery schemas, as facts (Home Assistant itself needs Python 3.13 and does
not install here), with a checker. Each fact is written down from Home Assistant core's source:

- homeassistant/components/mqtt/schemas.py, MQTT_ENTITY_COMMON_SCHEMA: availability (`availability_topic`
  exclusive with `availability`; `payload_available`, `payload_not_available`, `availability_mode`,
  `availability_template`), `device` (at least one of `identifiers`, `connections`; string fields),
  `origin` (MQTT_ORIGIN_INFO_SCHEMA: `name` required, `sw_version`, `support_url`),
  `enabled_by_default`, `entity_category`, `icon`, `json_attributes_topic`, `json_attributes_template`,
  `object_id` (deprecated since 2025.10, dropped by 2026.4), `default_entity_id` (a string; Home
  Assistant uses it as the entity id, so it is checked here as a valid one of the platform's domain),
  `unique_id`, `entity_picture`;
- config.py, MQTT_RO_SCHEMA / MQTT_BASE_SCHEMA: `state_topic` (required for read-only platforms),
  `value_template`, `qos` (0-2), `encoding`;
- binary_sensor.py: `payload_on`, `payload_off`, `device_class` (BinarySensorDeviceClass), `expire_after`,
  `force_update`, `off_delay`, `name`;
- sensor.py: `device_class` (SensorDeviceClass), `state_class` (measurement, total, total_increasing,
  measurement_angle), `unit_of_measurement`, `options` (only with device_class enum, which takes
  neither a state_class nor a unit), `expire_after`, `force_update`, `last_reset_value_template`,
  `suggested_display_precision`, `name`;
- image.py: exactly one of `image_topic`, `url_topic`; `content_type` (not with `url_topic`),
  `image_encoding` ("b64"), `url_template`, `name`; no `state_topic`;
- event.py: `state_topic` and `event_types` (a list of strings) required, `device_class` (button,
  doorbell, motion), `name`; retained messages on the state topic are ignored;
- homeassistant/core.py, valid_entity_id: `^(?!.+__)(?!_)[\\da-z_]+(?<!_)\\.(?!_)[\\da-z_]+(?<!_)$`;
- the discovery topic: `<prefix>/<component>/[<node_id>/]<object_id>/config`, ids of [a-zA-Z0-9_-].
"""

from __future__ import annotations

import re
from typing import Any

ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")
DISCOVERY_TOPIC = re.compile(r"^[^/#+]+/(binary_sensor|sensor|image|event)/(?:[a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config$")
COMMON = {
    "availability_topic", "availability", "availability_mode", "availability_template", "payload_available",
    "payload_not_available", "device", "origin", "enabled_by_default", "entity_category", "icon",
    "json_attributes_topic", "json_attributes_template", "object_id", "default_entity_id", "unique_id",
    "entity_picture", "name", "qos", "encoding",
}  # fmt: skip
READ_ONLY = {"state_topic", "value_template"}
PLATFORMS: dict[str, dict[str, set[str]]] = {
    "binary_sensor": {
        "required": {"state_topic"},
        "allowed": READ_ONLY
        | {"payload_on", "payload_off", "device_class", "expire_after", "force_update", "off_delay"},
    },
    "sensor": {
        "required": {"state_topic"},
        "allowed": READ_ONLY
        | {"device_class", "state_class", "unit_of_measurement", "options", "expire_after", "force_update"}
        | {"last_reset_value_template", "suggested_display_precision"},
    },
    "image": {
        "required": set(),
        "allowed": {"image_topic", "url_topic", "content_type", "image_encoding", "url_template"},
    },
    "event": {"required": {"state_topic", "event_types"}, "allowed": READ_ONLY | {"event_types", "device_class"}},
}
DEVICE_CLASSES = {
    "binary_sensor": {
        "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas",
        "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power",
        "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
    },
    "event": {"button", "doorbell", "motion"},
}  # fmt: skip
STATE_CLASSES = {"measurement", "total", "total_increasing", "measurement_angle"}
DEVICE_KEYS = {
    "identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version", "serial_number",
    "sw_version", "via_device", "suggested_area", "configuration_url",
}  # fmt: skip


def _topic(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value.encode()) <= 65535 and not set(value) & {"#", "+", "\0"}


def problems(topic: str, config: dict[str, Any]) -> list[str]:
    """What Home Assistant would refuse (or silently drop) in this discovery config; [] when none."""
    found: list[str] = []
    match = DISCOVERY_TOPIC.match(topic)
    if match is None:
        return [f"{topic}: not a discovery topic of a known platform"]
    platform = match.group(1)
    facts = PLATFORMS[platform]
    unknown = set(config) - COMMON - facts["allowed"]
    found += [f"{key}: not a key of the {platform} platform" for key in sorted(unknown)]
    found += [f"{key}: required" for key in sorted(facts["required"] - set(config))]
    if "availability_topic" in config and "availability" in config:
        found.append("availability_topic and availability are exclusive")
    for key in ("state_topic", "availability_topic", "image_topic", "url_topic", "json_attributes_topic"):
        if key in config and not _topic(config[key]):
            found.append(f"{key}: not a valid topic")
    entity = config.get("default_entity_id")
    if entity is not None and (not isinstance(entity, str) or not ENTITY_ID.match(entity)):
        found.append(f"default_entity_id: {entity!r} is not a valid entity id")
    elif entity is not None and entity.split(".")[0] != platform:
        found.append(f"default_entity_id: {entity!r} is not of the {platform} domain")
    if "qos" in config and config["qos"] not in (0, 1, 2):
        found.append("qos: 0, 1 or 2")
    if "entity_category" in config and config["entity_category"] not in ("config", "diagnostic"):
        found.append("entity_category: config or diagnostic")
    found += _device(config.get("device")) + _origin(config.get("origin"))
    if (
        "device_class" in config
        and platform in DEVICE_CLASSES
        and config["device_class"] not in DEVICE_CLASSES[platform]
    ):
        found.append(f"device_class: {config['device_class']!r} is not a {platform} device class")
    found += _platform(platform, config)
    return found


def _device(device: Any) -> list[str]:
    if device is None:
        return []
    if not isinstance(device, dict):
        return ["device: must be a mapping"]
    found = [f"device.{key}: not a device key" for key in sorted(set(device) - DEVICE_KEYS)]
    if not device.get("identifiers") and not device.get("connections"):
        found.append("device: needs identifiers or connections")
    found += [
        f"device.{k}: must be a string"
        for k, v in device.items()
        if k not in ("identifiers", "connections") and not isinstance(v, str)
    ]
    return found


def _origin(origin: Any) -> list[str]:
    if origin is None:
        return []
    if not isinstance(origin, dict) or not isinstance(origin.get("name"), str):
        return ["origin: needs a name"]
    return [f"origin.{key}: not an origin key" for key in sorted(set(origin) - {"name", "sw_version", "support_url"})]


def _platform(platform: str, config: dict[str, Any]) -> list[str]:
    found: list[str] = []
    if platform == "image":
        if ("image_topic" in config) == ("url_topic" in config):
            found.append("image: exactly one of image_topic and url_topic")
        if "content_type" in config and "url_topic" in config:
            found.append("image: content_type cannot go with url_topic")
        if config.get("image_encoding", "b64") != "b64":
            found.append("image_encoding: only b64")
    if platform == "event":
        types = config.get("event_types")
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            found.append("event_types: a list of strings")
    if platform == "sensor":
        if "state_class" in config and config["state_class"] not in STATE_CLASSES:
            found.append(f"state_class: {config['state_class']!r}")
        if "options" in config:
            if config.get("device_class") != "enum":
                found.append("options: only with device_class enum")
            if "state_class" in config or "unit_of_measurement" in config:
                found.append("options: an enum sensor takes no state_class or unit_of_measurement")
            if not isinstance(config["options"], list) or not all(isinstance(o, str) for o in config["options"]):
                found.append("options: a list of strings")
        elif config.get("device_class") == "enum":
            found.append("device_class enum: needs options")
    return found
