"""The MQTT publisher against a real mosquitto: availability and last will, outbox order, outages, retained state."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from support.mqtt import Broker, Subscriber

from streamwatch.config import MqttConfig
from streamwatch.outputs.mqtt.client import MqttOutput
from streamwatch.outputs.mqtt.topics import mqtt_message
from streamwatch.store.db import Database
from streamwatch.store.outbox import Outbox


def config(broker: Broker, **fields: object) -> MqttConfig:
    return MqttConfig(host="127.0.0.1", port=broker.port, topic_prefix="sw", keepalive_s=5, **fields)


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
        discovery = [mqtt_message("sw/hello", b"config", retain=True)]
        publisher = MqttOutput(config(broker), outbox(tmp_path), on_connect=lambda: discovery)
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
        from streamwatch.outputs.mqtt.client import MqttOutput
        from streamwatch.config import MqttConfig
        from streamwatch.store.db import Database
        from streamwatch.store.outbox import Outbox
        async def main():
            settings = MqttConfig(host="127.0.0.1", port={broker.port}, topic_prefix="sw", keepalive_s=5)
            publisher = MqttOutput(settings, Outbox(Database.open("sqlite:///{tmp_path / "will.db"}")))
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
    box.add([mqtt_message("sw/seq", str(index).encode()) for index in range(20)])

    async def scenario() -> None:
        publisher = MqttOutput(config(broker), box)
        task = asyncio.create_task(publisher.run())
        await until(lambda: publisher.delivered == 20)
        box.add([mqtt_message("sw/seq", b"20")])
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
        publisher = MqttOutput(config(broker), box, reconnect_initial_s=0.5)
        task = asyncio.create_task(publisher.run())
        await asyncio.wait_for(publisher.connected.wait(), 10)
        box.add([mqtt_message("sw/events", b"0")])
        publisher.notify()
        await until(lambda: publisher.delivered == 1)
        await asyncio.to_thread(broker.stop)
        for index in range(1, 21):  # events keep happening during the outage
            box.add([mqtt_message("sw/events", str(index).encode())])
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
    box.add(
        [
            mqtt_message("sw/gate/fence/state", b"ON", retain=True),
            mqtt_message("sw/gate/fence/snapshot", b"\xff\xd8", retain=True),
            mqtt_message("sw/events", json.dumps({"type": "open"}).encode()),
        ]
    )

    async def scenario() -> None:
        publisher = MqttOutput(config(broker), box)
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
            wrong = MqttOutput(
                config(broker, username="streamwatch", password="wrong-pw"), outbox(tmp_path), reconnect_initial_s=0.2
            )
            task = asyncio.create_task(wrong.run())
            await asyncio.sleep(1.5)
            assert not wrong.connected.is_set() and not task.done()  # refused, retrying, not crashed
            await wrong.stop(task)
            right = MqttOutput(config(broker, username="streamwatch", password="hunter2"), outbox(tmp_path))
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

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=streamwatch test CA",
    )
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"
    )
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    broker = Broker(tmp_path)
    broker.config.write_text(
        broker.config.read_text()
        + f"cafile {tmp_path / 'ca.crt'}\ncertfile {tmp_path / 'server.crt'}\nkeyfile {tmp_path / 'server.key'}\n"
    )
    broker.start()
    try:

        async def scenario() -> None:
            secure = MqttOutput(config(broker, tls=True, ca_file=tmp_path / "ca.crt"), outbox(tmp_path))
            task = asyncio.create_task(secure.run())
            await asyncio.wait_for(secure.connected.wait(), 10)
            await secure.stop(task)
            untrusted = MqttOutput(config(broker, tls=True), outbox(tmp_path), reconnect_initial_s=0.2)
            task = asyncio.create_task(untrusted.run())  # system CAs do not know the private CA: refused
            await asyncio.sleep(1.5)
            assert not untrusted.connected.is_set()
            await untrusted.stop(task)

        asyncio.run(scenario())
    finally:
        broker.stop()


def test_the_backlog_goes_out_before_the_announcements(broker: Broker, tmp_path: Path) -> None:
    """After a crash the outbox may still hold an old ON; the state announced on reconnect is newer and
    must be the last word (the retained state a subscriber sees)."""
    box = outbox(tmp_path)
    box.add([mqtt_message("sw/gate/fence/state", b"ON", retain=True), mqtt_message("sw/events", b'{"type": "open"}')])
    subscriber = Subscriber(broker.port, "sw/#")

    async def scenario() -> None:
        announcements = [mqtt_message("sw/gate/fence/state", b"OFF", retain=True)]
        publisher = MqttOutput(config(broker), box, on_connect=lambda: announcements)
        task = asyncio.create_task(publisher.run())
        await until(lambda: publisher.connected.is_set() and publisher.delivered == 2)
        await publisher.stop(task)

    asyncio.run(scenario())
    assert [m.payload for m in subscriber.wait_for("sw/gate/fence/state", 2)] == [b"ON", b"OFF"]
    later = Subscriber(broker.port, "sw/gate/fence/state")
    assert later.wait_for("sw/gate/fence/state")[0].payload == b"OFF"
    subscriber.close()
    later.close()


def test_a_lost_broker_is_noticed_without_publishing_and_the_reconnect_is_prompt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Broker(tmp_path)
    broker.start()

    async def scenario() -> None:
        # a long backoff: without probing the broker's port, the reconnect would wait 24-36 s
        publisher = MqttOutput(config(broker), outbox(tmp_path), reconnect_initial_s=30)
        task = asyncio.create_task(publisher.run())
        await until(publisher.connected.is_set)
        await asyncio.to_thread(broker.stop)  # nothing is published meanwhile: the relay is idle
        await until(lambda: not publisher.connected.is_set())
        assert publisher.last_error
        await asyncio.sleep(1.0)
        await asyncio.to_thread(broker.start)
        await until(publisher.connected.is_set, timeout=20)  # well before the 24 s backoff would end
        await publisher.stop(task)

    try:
        with caplog.at_level(logging.INFO, logger="streamwatch.outputs.mqtt.client"):
            asyncio.run(scenario())
    finally:
        broker.stop()
    assert caplog.text.count("mqtt: connected to") == 2


def test_a_missing_ca_file_is_logged_and_retried_not_fatal(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        publisher = MqttOutput(
            config(broker, tls=True, ca_file=tmp_path / "gone.pem"), outbox(tmp_path), reconnect_initial_s=0.1
        )
        task = asyncio.create_task(publisher.run())
        await until(lambda: "gone.pem" in publisher.last_error)
        await asyncio.sleep(0.5)
        assert not task.done() and not publisher.connected.is_set()  # still trying, not dead
        await publisher.stop(task)

    with caplog.at_level(logging.ERROR, logger="streamwatch.outputs.mqtt.client"):
        asyncio.run(scenario())
    assert f"cannot use mqtt.ca_file {tmp_path / 'gone.pem'}: No such file or directory" in caplog.text
    assert caplog.text.count("unavailable") < 10  # backing off, not spinning


def test_the_last_will_is_registered_again_on_a_restarted_broker(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    script = textwrap.dedent(f"""
        import asyncio
        from streamwatch.outputs.mqtt.client import MqttOutput
        from streamwatch.config import MqttConfig
        from streamwatch.store.db import Database
        from streamwatch.store.outbox import Outbox
        async def main():
            settings = MqttConfig(host="127.0.0.1", port={broker.port}, topic_prefix="sw", keepalive_s=5)
            publisher = MqttOutput(settings, Outbox(Database.open("sqlite:///{tmp_path / "will.db"}")),
                                      reconnect_initial_s=30)
            await publisher.run()
        asyncio.run(main())
    """)
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        first = Subscriber(broker.port, "sw/available")
        first.wait_for("sw/available")
        first.close()
        broker.stop()  # a new broker process: it knows nothing of the old connection or its will
        broker.start()
        subscriber = Subscriber(broker.port, "sw/available")
        wait = subscriber.wait_for("sw/available", timeout=30)  # `online` again, from the new connection
        assert wait[-1].payload == b"online"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        deadline = time.monotonic() + 30
        while subscriber.on("sw/available")[-1].payload != b"offline":
            assert time.monotonic() < deadline, "the will did not arrive"
            time.sleep(0.1)
        subscriber.close()
    finally:
        process.kill()
        broker.stop()


class GarbageBroker:
    """A TCP server on a free port that answers MQTT clients with something that is not MQTT: `connack`
    (a valid CONNACK, then garbage in the same packet), `random` bytes, or an `http` error page."""

    def __init__(self, mode: str) -> None:
        self.mode, self.accepted = mode, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _address = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            try:
                connection.recv(4096)
                garbage = {
                    "connack": b"\x20\x02\x00\x00" + bytes(range(7, 200)),
                    "random": bytes((i * 37 + 11) % 256 for i in range(300)),
                    "http": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
                }[self.mode]
                connection.sendall(garbage)
                connection.recv(4096)  # until the client gives up
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("mode", ["connack", "random", "http"])
def test_a_broker_that_speaks_garbage_is_never_called_connected(
    mode: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    garbage = GarbageBroker(mode)
    settings = MqttConfig(host="127.0.0.1", port=garbage.port, topic_prefix="sw", keepalive_s=5)
    connected_ever: list[bool] = []

    async def scenario() -> str | None:
        publisher = MqttOutput(settings, outbox(tmp_path), reconnect_initial_s=0.2)
        task = asyncio.create_task(publisher.run())
        while caplog.text.count("unavailable (") < (2 if mode == "connack" else 1):
            connected_ever.append(publisher.connected.is_set())
            await asyncio.sleep(0.02)
        problem = publisher.problem()
        await publisher.stop(task)
        return problem

    try:
        problem = asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        garbage.close()
    gc.collect()  # a future whose exception nobody read is reported when it is collected
    assert garbage.accepted >= 1 and not any(connected_ever)
    assert "mqtt: connected to" not in caplog.text and "never retrieved" not in caplog.text
    assert problem is not None and f"127.0.0.1:{garbage.port}" in problem
    if mode == "connack":
        assert "before the broker acknowledged anything (is it MQTT?)" in problem
    else:
        assert "no MQTT answer within 10 s" in problem or "acknowledged anything" in problem
