"""MQTT via aiomqtt: availability with a last will, the outbox relayed in order, best-effort state.

Events reach the broker only through the outbox (store/outbox.py): they are committed to the
database first, and this relay publishes the oldest undelivered message with QoS 1, deletes it when
the broker acknowledged it, and only then takes the next. If the broker is down, messages wait in the
database and go out in order after the reconnect (at least once: a message whose acknowledgement
was lost in a disconnect is sent again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Callable, Sequence

import aiomqtt

from streamwatch.alerts.topics import Topics
from streamwatch.config import MqttConfig
from streamwatch.store.events import Message
from streamwatch.store.outbox import Outbox

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0
RECONNECT_MAX_S = 30.0


class MqttPublisher:
    def __init__(
        self,
        config: MqttConfig,
        outbox: Outbox,
        *,
        on_connect: Callable[[], Sequence[Message]] = tuple,
        reconnect_initial_s: float = 1.0,
        instance: str = "",
    ) -> None:
        self.config = config
        self.topics = Topics(config, instance)
        self.outbox = outbox
        self._on_connect = on_connect
        self._reconnect_initial_s = reconnect_initial_s
        self._client: aiomqtt.Client | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self.connected = asyncio.Event()
        self.delivered = 0

    def notify(self) -> None:
        """New outbox messages were committed: deliver them now rather than at the next poll."""
        self._wake.set()

    def _client_for(self) -> aiomqtt.Client:
        config = self.config
        tls: ssl.SSLContext | None = None
        if config.tls:
            tls = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
        return aiomqtt.Client(
            config.host,
            config.port,
            username=config.username,
            password=config.password.get_secret_value() if config.password else None,
            identifier=config.client_id,
            will=aiomqtt.Will(self.topics.available, b"offline", qos=1, retain=True),
            keepalive=config.keepalive_s,
            tls_context=tls,
            timeout=PUBLISH_TIMEOUT_S,
        )

    async def run(self) -> None:
        """Connect, announce, relay the outbox; on any connection failure, back off and reconnect."""
        backoff = self._reconnect_initial_s
        while not self._stopping:
            try:
                async with self._client_for() as client:
                    self._client = client
                    log.info("mqtt: connected to %s:%d", self.config.host, self.config.port)
                    backoff = self._reconnect_initial_s
                    await client.publish(self.topics.available, b"online", qos=1, retain=True)
                    for message in self._on_connect():
                        await client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
                    self.connected.set()
                    await self._relay(client)
            except aiomqtt.MqttError as exc:
                if self._stopping:
                    break
                log.warning("mqtt: %s:%d unavailable (%s); retrying in %.0f s", self.config.host, self.config.port,
                            exc, backoff)  # fmt: skip
            finally:
                self._client = None
                self.connected.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_stopping(), backoff * random.uniform(0.8, 1.2))
            backoff = min(RECONNECT_MAX_S, backoff * 2)

    async def _wait_stopping(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.1)

    async def _relay(self, client: aiomqtt.Client) -> None:
        while not self._stopping:
            self._wake.clear()
            batch = await asyncio.to_thread(self.outbox.pending, 100)
            for message in batch:
                await client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
                await asyncio.to_thread(self.outbox.delivered, message.id)
                self.delivered += 1
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    async def publish_now(self, message: Message) -> bool:
        """Best effort, for state that is re-published anyway (camera status): False when offline."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        try:
            await client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        except aiomqtt.MqttError:
            return False
        return True

    async def stop(self, task: asyncio.Task[None], drain_s: float = 5.0) -> None:
        """Deliver what is pending (up to `drain_s`), say offline, disconnect."""
        deadline = asyncio.get_running_loop().time() + drain_s
        while self.connected.is_set() and asyncio.get_running_loop().time() < deadline:
            if await asyncio.to_thread(self.outbox.size) == 0:
                break
            self.notify()
            await asyncio.sleep(0.05)
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.topics.available, b"offline", qos=1, retain=True)
        self._stopping = True
        self._wake.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
