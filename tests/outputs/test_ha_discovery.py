"""Home Assistant entities over MQTT discovery: per camera × rule an alert binary_sensor, the last alert
snapshot as an image, the transitions as an event entity and a count/choice rule's answer as a sensor;
per camera its status sensors; all under the camera's device, checked against Home Assistant's schema
facts (support/ha_discovery.py); the configs of a rule or camera that went away are cleared, whether
it went while running or while stopped."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from support.ha_discovery import problems
from support.helpers import REPO, wait_for
from support.mqtt import Broker, Subscriber
from support.service import Running, SceneBackend, figure_on_the_right, write_site

from streamwatch.config import load_settings
from streamwatch.inference.limits import PromptLimits
from streamwatch.inference.types import Prompt
from streamwatch.outputs.mqtt.announce import Announcer
from streamwatch.outputs.mqtt.discovery import Discovery, entity_slug
from streamwatch.outputs.mqtt.topics import Topics
from streamwatch.rules.loader import ActiveRules, configured_rules

PEOPLE = """
[[rules]]
id = "people"
title = "People at the fence"
cameras = ["gate"]
question = "How many people are at {location}? Answer with a number."
answer = "count"
alert_when = ">= 3"
"""


class CountingBackend(SceneBackend):
    """The scene double, and "1" person while the figure is right of centre, else "0"."""

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        return ["1" if figure_on_the_right(p.image) else "0" for p in prompts]


def configs(messages: Any) -> dict[str, dict[str, Any]]:
    return {m.address: json.loads(m.payload) for m in messages if "/config" in m.address and m.payload}


def test_every_entity_of_the_shipped_demo_passes_home_assistants_schema() -> None:
    settings = load_settings(REPO / "config.toml")
    rules = ActiveRules(configured_rules(settings, PromptLimits(settings.model.max_question_chars)))
    topics = Topics(settings.mqtt)
    announcer = Announcer(
        topics, cameras=lambda: settings.cameras, rules=rules, is_open=lambda *_: False, statuses=list, discovery=True
    )
    found = configs(announcer.messages())
    pairs = [(c.id, r.id) for c in settings.cameras for r in rules.alerting_for_camera(c)]
    counted = sum(1 for c in settings.cameras for r in rules.alerting_for_camera(c) if r.answer in ("count", "choice"))
    assert len(found) == 3 * len(pairs) + counted + 2 * len(settings.cameras)
    assert sum(topic.startswith("homeassistant/binary_sensor/") for topic in found) == len(pairs) == 19
    for topic, config in found.items():
        assert problems(topic, config) == [], topic
    for key in ("unique_id", "default_entity_id"):
        assert len({c[key] for c in found.values()}) == len(found)  # no two entities collide
    for camera in settings.cameras:
        mine = [c for c in found.values() if c["device"]["identifiers"] == [f"streamwatch_{camera.id}"]]
        assert len(mine) == 2 + sum(
            3 + (r.answer in ("count", "choice")) for r in rules.alerting_for_camera(camera)
        )  # every entity of the camera under its one device
    shelf = found["homeassistant/sensor/streamwatch_aisle_shelf-fill_value/config"]
    assert shelf["device_class"] == "enum" and shelf["options"] == ["empty", "partial", "full"]
    assert shelf["default_entity_id"] == "sensor.streamwatch_aisle_shelf_fill_value"
    assert all(
        c["origin"]["name"] == "streamwatch" and c["availability_topic"] == "streamwatch/available"
        for c in found.values()
    )


def test_the_schema_facts_refuse_what_home_assistant_refuses() -> None:
    good = Discovery(Topics(load_settings(REPO / "config.toml").mqtt))
    camera = load_settings(REPO / "config.toml").cameras[0]
    (topic, alert), (image_topic, image), (event_topic, event) = good.rule_configs(camera, _rule())[:3]
    assert problems(topic, alert) == problems(image_topic, image) == problems(event_topic, event) == []
    assert problems(topic, alert | {"default_entity_id": "binary_sensor.gate_right-side"})  # a hyphen
    assert problems(topic, alert | {"default_entity_id": "sensor.gate"})  # another domain
    assert problems(topic, alert | {"stat_topic": "x"})  # a typo of a key
    assert problems(topic, alert | {"device": {"name": "no identifiers"}})
    assert problems(topic, alert | {"origin": {"sw_version": "1"}})  # no name
    assert problems(image_topic, {k: v for k, v in image.items() if k != "image_topic"})
    assert problems(event_topic, {k: v for k, v in event.items() if k != "event_types"})
    assert problems(topic.replace("binary_sensor", "camera"), alert)
    assert entity_slug("Sw/Gate__Right-Side_") == "sw_gate_right_side"


def _rule() -> Any:
    settings = load_settings(REPO / "config.toml")
    return next(r for r in configured_rules(settings, PromptLimits(2000)).rules if r.id == "fence-climb")


def test_entities_follow_the_service_and_go_with_their_rule_or_camera(tmp_path: Path, broker: Broker) -> None:
    config = write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), broker.port)
    (tmp_path / "rules" / "people.toml").write_text(PEOPLE, encoding="utf-8")
    settings = load_settings(config)
    subscriber = Subscriber(broker.port, "#")
    running = Running(settings, lambda _s: CountingBackend())
    base = "homeassistant/{}/sw_gate_{}/config"
    people = [base.format("binary_sensor", "people"), base.format("image", "people_snapshot")]
    people += [base.format("event", "people_alert"), base.format("sensor", "people_value")]
    try:
        wait_for(lambda: any(d.transition == "open" for d in running.decisions), 60, "the figure's alert")
        wait_for(lambda: len({m.payload for m in subscriber.on("sw/gate/people/value")}) == 2, 60, "both counts")
        for topic in [*people, base.format("sensor", "camera_state"), base.format("sensor", "camera_fps")]:
            received = subscriber.on(topic)
            assert received, (topic, sorted(set(subscriber.topics())))
            message = received[0]
            assert problems(topic, json.loads(message.payload)) == [], topic
        # the decision is seen before its event leaves the outbox: wait for the message itself
        (opened, *_) = [json.loads(m.payload) for m in subscriber.wait_for("sw/gate/right-side/event", timeout=60)]
        assert opened["event_type"] == "open" and opened["title"] == "Person on the right side of the fence"
        assert not subscriber.on("sw/gate/right-side/event")[0].retain  # an event entity ignores retained ones
        value = Subscriber(broker.port, "sw/gate/people/value")  # kept for a Home Assistant that starts later
        try:
            wait_for(lambda: bool(value.on("sw/gate/people/value")), 15, "the retained count")
            assert value.on("sw/gate/people/value")[0].retain
        finally:
            value.close()
        # the rule goes away while running: its entities are cleared
        (tmp_path / "rules" / "people.toml").unlink()
        for topic in people:

            def cleared(t: str = topic) -> bool:
                return any(m.payload == b"" for m in subscriber.on(t))

            wait_for(cleared, 30, f"{topic} cleared")
    finally:
        running.stop()
    # the camera goes away while stopped: its entities are cleared at the next start
    config.write_text(config.read_text(encoding="utf-8").replace('id = "gate"', 'id = "gate2"'), encoding="utf-8")
    gate = [base.format("binary_sensor", "right-side"), base.format("sensor", "camera_fps")]
    running = Running(load_settings(config), lambda _s: CountingBackend())
    try:
        for topic in gate:

            def emptied(t: str = topic) -> bool:
                return subscriber.on(t)[-1].payload == b""

            wait_for(emptied, 30, f"{topic} cleared")
        wait_for(lambda: bool(subscriber.on("homeassistant/binary_sensor/sw_gate2_right-side/config")), 30, "gate2")
    finally:
        running.stop()
        subscriber.close()
    late = Subscriber(broker.port, "homeassistant/#")  # what a Home Assistant starting now would get
    try:
        wait_for(lambda: bool(late.on("homeassistant/binary_sensor/sw_gate2_right-side/config")), 15, "retained")
        assert not any("sw_gate_" in topic for topic in late.topics())
    finally:
        late.close()
    assert entity_slug("sw_gate2_right-side") == "sw_gate2_right_side"
