"""The MQTT publisher against a real mosquitto: availability and last will, outbox order, outages, retained state."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mqtt_helpers import Broker, Subscriber

from streamwatch.alerts.mqtt import MqttPublisher
from streamwatch.config import MqttConfig
from streamwatch.store.db import Database
from streamwatch.store.events import Message
from streamwatch.store.outbox import Outbox


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path) as running:
        yield running


def config(broker: Broker, **fields: object) -> MqttConfig:
    return MqttConfig(host="127.0.0.1", port=broker.port, topic_prefix="sw", keepalive_s=5, **fields)  # type: ignore[arg-type]


def outbox(tmp_path: Path) -> Outbox:
    return Outbox(Database.open(f"sqlite:///{tmp_path / 'sw.db'}"))


async def until(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


def test_online_retained_on_connect_and_offline_on_clean_stop(broker: Broker, tmp_path: Path) -> None:
    subscriber = Subscriber(broker.port, "sw/#")

    async def scenario() -> None:
        discovery = [Message("sw/hello", b"config", retain=True)]
        publisher = MqttPublisher(config(broker), outbox(tmp_path), on_connect=lambda: discovery)
        task = asyncio.create_task(publisher.run())
        await asyncio.wait_for(publisher.connected.wait(), 10)
        await asyncio.to_thread(subscriber.wait_for, "sw/hello")
        await publisher.stop(task)

    asyncio.run(scenario())
    available = subscriber.wait_for("sw/available", 2)
    assert [m.payload for m in available] == [b"online", b"offline"]
    late = Subscriber(broker.port, "sw/available")  # retained: a new subscriber learns the state at once
    retained = late.wait_for("sw/available")[0]
    assert retained.payload == b"offline" and retained.retain
    subscriber.close()
    late.close()


def test_the_last_will_says_offline_when_the_process_dies(broker: Broker, tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import asyncio
        from streamwatch.alerts.mqtt import MqttPublisher
        from streamwatch.config import MqttConfig
        from streamwatch.store.db import Database
        from streamwatch.store.outbox import Outbox
        async def main():
            settings = MqttConfig(host="127.0.0.1", port={broker.port}, topic_prefix="sw", keepalive_s=5)
            publisher = MqttPublisher(settings, Outbox(Database.open("sqlite:///{tmp_path / "will.db"}")))
            task = asyncio.create_task(publisher.run())
            await publisher.connected.wait()
            print("connected", flush=True)
            await task
        asyncio.run(main())
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    subscriber = Subscriber(broker.port, "sw/available")
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "connected"
        subscriber.wait_for("sw/available")
        os.kill(process.pid, signal.SIGKILL)  # no DISCONNECT: the broker publishes the will
        process.wait(10)
        messages = subscriber.wait_for("sw/available", 2)
        assert [m.payload for m in messages][-1] == b"offline"
    finally:
        process.kill()
        subscriber.close()


def test_outbox_messages_are_delivered_in_commit_order_and_removed(broker: Broker, tmp_path: Path) -> None:
    subscriber = Subscriber(broker.port, "sw/seq")
    box = outbox(tmp_path)
    box.add([Message("sw/seq", str(index).encode()) for index in range(20)])

    async def scenario() -> None:
        publisher = MqttPublisher(config(broker), box)
        task = asyncio.create_task(publisher.run())
        await until(lambda: publisher.delivered == 20)
        box.add([Message("sw/seq", b"20")])
        publisher.notify()
        await until(lambda: publisher.delivered == 21)
        await publisher.stop(task)

    asyncio.run(scenario())
    received = subscriber.wait_for("sw/seq", 21)
    assert [int(m.payload) for m in received] == list(range(21))
    assert box.size() == 0
    subscriber.close()


def test_nothing_is_lost_while_the_broker_is_down_for_30_s(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    # the subscriber's session survives the broker restart, so it misses nothing either
    persistent = f"persistence true\npersistence_location {tmp_path}/\n"
    broker.config.write_text(broker.config.read_text().replace("persistence false\n", persistent))
    broker.start()
    subscriber = Subscriber(broker.port, "sw/events", session="outage-test")
    box = outbox(tmp_path)

    async def scenario() -> None:
        publisher = MqttPublisher(config(broker), box, reconnect_initial_s=0.5)
        task = asyncio.create_task(publisher.run())
        await asyncio.wait_for(publisher.connected.wait(), 10)
        box.add([Message("sw/events", b"0")])
        publisher.notify()
        await until(lambda: publisher.delivered == 1)
        await asyncio.to_thread(broker.stop)
        for index in range(1, 21):  # events keep happening during the outage
            box.add([Message("sw/events", str(index).encode())])
            publisher.notify()
            await asyncio.sleep(1.5)
        assert box.size() == 20 and publisher.delivered == 1  # all waiting in the database
        await asyncio.to_thread(broker.start)
        await until(lambda: publisher.delivered == 21, timeout=45)
        await publisher.stop(task)

    try:
        asyncio.run(scenario())
        received = subscriber.wait_for("sw/events", 21, timeout=20)
        assert [int(m.payload) for m in received] == list(range(21))  # every one, in order
    finally:
        subscriber.close()
        broker.stop()


def test_retained_state_and_snapshot_reach_a_subscriber_that_connects_later(broker: Broker, tmp_path: Path) -> None:
    box = outbox(tmp_path)
    box.add([
        Message("sw/gate/fence/state", b"ON", retain=True),
        Message("sw/gate/fence/snapshot", b"\xff\xd8", retain=True),
        Message("sw/events", json.dumps({"type": "open"}).encode()),
    ])  # fmt: skip

    async def scenario() -> None:
        publisher = MqttPublisher(config(broker), box)
        task = asyncio.create_task(publisher.run())
        await until(lambda: publisher.delivered == 3)
        await publisher.stop(task)

    asyncio.run(scenario())
    later = Subscriber(broker.port, "sw/#")
    state = later.wait_for("sw/gate/fence/state")[0]
    snapshot = later.wait_for("sw/gate/fence/snapshot")[0]
    assert (state.payload, state.retain) == (b"ON", True)
    assert (snapshot.payload, snapshot.retain) == (b"\xff\xd8", True)
    assert later.on("sw/events") == []  # events are not retained
    later.close()


def test_username_and_password_are_used_and_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = Broker(tmp_path)
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "streamwatch", "hunter2"], check=True)
    broker.config.write_text(broker.config.read_text().replace("allow_anonymous true", f"password_file {passwords}"))
    broker.start()
    try:

        async def scenario() -> None:
            wrong = MqttPublisher(config(broker, username="streamwatch", password="wrong-pw"), outbox(tmp_path),
                                  reconnect_initial_s=0.2)  # fmt: skip
            task = asyncio.create_task(wrong.run())
            await asyncio.sleep(1.5)
            assert not wrong.connected.is_set() and not task.done()  # refused, retrying, not crashed
            await wrong.stop(task)
            right = MqttPublisher(config(broker, username="streamwatch", password="hunter2"), outbox(tmp_path))
            task = asyncio.create_task(right.run())
            await asyncio.wait_for(right.connected.wait(), 10)
            await right.stop(task)

        asyncio.run(scenario())
        assert "unavailable" in caplog.text
        assert "hunter2" not in caplog.text and "wrong-pw" not in caplog.text
    finally:
        broker.stop()


def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=streamwatch test CA")  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"
    )
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    broker = Broker(tmp_path)
    broker.config.write_text(
        broker.config.read_text()
        + f"cafile {tmp_path / 'ca.crt'}\ncertfile {tmp_path / 'server.crt'}\nkeyfile {tmp_path / 'server.key'}\n"
    )
    broker.start()
    try:

        async def scenario() -> None:
            secure = MqttPublisher(config(broker, tls=True, ca_file=tmp_path / "ca.crt"), outbox(tmp_path))
            task = asyncio.create_task(secure.run())
            await asyncio.wait_for(secure.connected.wait(), 10)
            await secure.stop(task)
            untrusted = MqttPublisher(config(broker, tls=True), outbox(tmp_path), reconnect_initial_s=0.2)
            task = asyncio.create_task(untrusted.run())  # system CAs do not know the private CA: refused
            await asyncio.sleep(1.5)
            assert not untrusted.connected.is_set()
            await untrusted.stop(task)

        asyncio.run(scenario())
    finally:
        broker.stop()
