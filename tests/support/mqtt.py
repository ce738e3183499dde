"""A real mosquitto broker on a free port (stop/start keeps the port) and a recording subscriber."""

from __future__ import annotations

import getpass
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from support.helpers import free_port


class Broker:
    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.config = folder / "mosquitto.conf"
        # run as whoever runs the tests (as root, mosquitto would switch to a user that cannot read tmp files)
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser {getpass.getuser()}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """Subscribes to `topic` (default everything) and records what arrives, in order."""

    def __init__(self, port: int, topic: str = "#", *, session: str | None = None) -> None:
        """session: a client id whose session the broker keeps (QoS 1 messages queue while away)."""
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        if session:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=session, clean_session=False)
        else:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: self._subscribed.set()
        self.client.on_connect = lambda client, *_args: client.subscribe(topic, qos=1)
        self.client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]  # paho takes seconds as float
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscriber did not subscribe")

    def _on_message(self, _client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, topic: str, count: int = 1, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.on(topic)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.on(topic))} of {count} messages on {topic}; got {self.topics()}")
            time.sleep(0.05)
        return self.on(topic)

    def topics(self) -> list[str]:
        with self._lock:
            return [m.topic for m in self.messages]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
