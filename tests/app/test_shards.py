"""Camera shards: each camera on exactly one instance; instances share one broker and one PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from support.helpers import wait_for
from support.mqtt import Broker, Subscriber
from support.service import RULES, Running

from streamwatch.config import load_settings
from streamwatch.config.shard import Shard
from streamwatch.errors import DataFileError
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore


def test_every_camera_is_on_exactly_one_shard_and_stays_there() -> None:
    ids = [f"cam-{index}" for index in range(300)]
    shards = [Shard(index, 3) for index in (1, 2, 3)]
    owned = [set(shard.select([type("C", (), {"id": i})() for i in ids])) for shard in shards]  # objects with .id
    names = [{camera.id for camera in group} for group in owned]
    assert set().union(*names) == set(ids) and sum(map(len, names)) == len(ids)  # all, and none twice
    assert all(70 <= len(group) <= 130 for group in names), [len(group) for group in names]  # roughly even
    more = [*ids, "cam-new"]
    assert [Shard(1, 3).of(i) for i in ids] == [Shard(1, 3).of(i) for i in more[:-1]]  # a new camera moves none
    # The same in another process: no per-process hash seed.
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "from streamwatch.config.shard import Shard; print([Shard(1, 3).of(f'cam-{i}') for i in range(20)])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == str([Shard(1, 3).of(f"cam-{i}") for i in range(20)])


@pytest.mark.parametrize(("spec", "message"), [("0/2", "1 <= I <= N"), ("3/2", "1 <= I <= N"), ("two", "I/N")])
def test_bad_shard_settings_are_named(tmp_path: Path, spec: str, message: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'shard = "{spec}"\n[model]\nid = "hub/model"\n')
    with pytest.raises(DataFileError) as failure:
        load_settings(config)
    assert f"{config}:1: shard:" in str(failure.value) and message in str(failure.value)
    result = subprocess.run(
        [sys.executable, "-m", "streamwatch", "run", "-c", str(config), "--shard", spec],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and message in result.stderr


def _cameras(count: int) -> list[str]:
    """Camera ids that put `count` cameras on each of two shards."""
    first = [f"cam-{i}" for i in range(50) if Shard(1, 2).of(f"cam-{i}") == 1][:count]
    second = [f"cam-{i}" for i in range(50) if Shard(1, 2).of(f"cam-{i}") == 2][:count]
    return first + second


def test_two_shards_share_a_broker_and_a_postgresql_database(tmp_path: Path, postgres_url: str) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):  # a figure in red, right of centre: every rule says yes
        image = Image.new("RGB", (320, 180), (90, 110, 90))
        ImageDraw.Draw(image).rectangle((220 + index, 60, 250 + index, 140), fill=(200, 30, 30))
        image.save(frames / f"{index}.png")
    cameras = _cameras(2)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "perimeter.toml").write_text(RULES)
    with Broker(tmp_path) as broker:
        blocks = "".join(
            f'[[cameras]]\nid = "{c}"\nurl = "{frames}"\nsample_interval_s = 0.5\ntags = ["perimeter"]\n'
            'location = "the fence"\n'
            for c in cameras
        )
        (tmp_path / "config.toml").write_text(
            textwrap.dedent(f"""
            [model]
            id = "test/scene-double"
            [storage]
            database_url = "{postgres_url}"
            [web]
            enabled = false
            [mqtt]
            host = "127.0.0.1"
            port = {broker.port}
            topic_prefix = "sw"
            home_assistant_discovery = true
        """)
            + blocks
        )
        settings = load_settings(tmp_path / "config.toml")
        subscriber = Subscriber(broker.port, "#")
        shards = [Running(settings.model_copy(update={"shard": spec})) for spec in ("1/2", "2/2")]
        try:
            assert sorted(shards[0].service.cameras.workers) == sorted(cameras[:2])
            assert sorted(shards[1].service.cameras.workers) == sorted(cameras[2:])
            subscriber.wait_for("sw/events", 4, timeout=60)  # one alert opened per camera
            time.sleep(2)  # time for a duplicate relay to show
            for spec in ("1-of-2", "2-of-2"):
                assert subscriber.on(f"sw/available/shard-{spec}")[-1].payload == b"online"
        finally:
            for running in shards:
                running.stop()
    events = [json.loads(message.payload) for message in subscriber.on("sw/events")]
    opened = [event for event in events if event["type"] == "open"]
    assert sorted(event["camera"] for event in opened) == sorted(cameras)  # each once: no camera ran twice
    assert len({event["event_id"] for event in events}) == len(events)  # no message relayed twice
    for camera in cameras:
        shard = "1-of-2" if camera in cameras[:2] else "2-of-2"
        config = json.loads(subscriber.on(f"homeassistant/binary_sensor/sw_{camera}_right-side/config")[-1].payload)
        assert config["availability_topic"] == f"sw/available/shard-{shard}"
    for spec in ("1-of-2", "2-of-2"):

        def offline(s: str = spec) -> bool:
            return subscriber.on(f"sw/available/shard-{s}")[-1].payload == b"offline"

        wait_for(offline, 10, "offline")
    assert not subscriber.on("sw/available")  # no instance claims the shared topic
    store = EventStore(Database.open(settings.database_url()), tmp_path / "snapshots")
    assert {e.camera for e in store.list() if e.kind == "open"} == set(cameras)  # one history for all shards
    store.db.close()
    subscriber.close()
