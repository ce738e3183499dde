"""The MQTT output via aiomqtt: availability with a last will, the outbox relayed in order, best-effort state.

Events reach the broker only through the outbox (store/outbox.py): they are committed to the
database first, and this output publishes the oldest undelivered message with QoS 1, deletes it when
the broker acknowledged it, and only then takes the next. If the broker is down, messages wait in the
database and go out in order after the reconnect (at least once: a message whose acknowledgement
was lost in a disconnect is sent again).

On every (re)connect: `online`, then the backlog the outbox held at that moment, then the
announcements (discovery, current alert states, camera status), so a state that was current before
a crash can never overwrite the state announced after it. A lost connection is noticed when it
happens (the socket closes, or the broker misses the keepalive), not at the next publish: `connected`
is cleared and the reconnect begins. While the broker is away, its port is probed every
`PROBE_INTERVAL_S`, so the reconnect follows within about a second of its return instead of at the
end of a long backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from streamwatch.config import MqttConfig
from streamwatch.errors import ConfigurationError
from streamwatch.outputs.base import Output
from streamwatch.outputs.mqtt.topics import Topics
from streamwatch.outputs.relay import deliver_waiting
from streamwatch.store.message import Message
from streamwatch.store.models import Event
from streamwatch.store.outbox import Outbox

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0
RECONNECT_MAX_S = 30.0
PROBE_INTERVAL_S = 0.5


class MqttOutput(Output):
    name = "mqtt"
    check = "broker"

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
        self.last_error = "not connected yet"  # why it is not connected (for readiness)

    def event_messages(self, event: Event, snapshot_jpeg: bytes | None, media_dir: Path | None) -> list[Message]:
        return self.topics.event_messages(event, snapshot_jpeg, media_dir)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[MqttOutput]:
        """Connected (and reconnecting) inside; at exit the outbox is drained for a few seconds, then
        `offline` is said and the connection closed."""
        task = asyncio.create_task(self.run(), name="mqtt")
        try:
            yield self
        finally:
            await self.stop(task)

    def problem(self) -> str | None:
        """None while connected to the broker, else why not (for readiness)."""
        if self.connected.is_set():
            return None
        return f"not connected to {self.config.host}:{self.config.port}: {self.last_error}"

    def notify(self) -> None:
        """New outbox messages were committed: deliver them now rather than at the next poll."""
        self._wake.set()

    def _client_for(self) -> aiomqtt.Client:
        config = self.config
        tls: ssl.SSLContext | None = None
        if config.tls:
            try:
                tls = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
            except (OSError, ssl.SSLError) as exc:  # logged and retried: the file may be put back
                raise TlsSetupError(f"cannot use mqtt.ca_file {config.ca_file}: {exc.strerror or exc}") from None
        return _Client(
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
        """Connect, announce, relay the outbox; on any failure, log it, back off and reconnect."""
        backoff = self._reconnect_initial_s

        acknowledged = False

        async def session(client: aiomqtt.Client) -> None:
            nonlocal backoff, acknowledged
            await client.publish(self.topics.available, b"online", qos=1, retain=True)
            acknowledged = True
            log.info("mqtt: connected to %s:%d", self.config.host, self.config.port)  # it acknowledged: MQTT
            backoff = self._reconnect_initial_s
            backlog = await asyncio.to_thread(self.outbox.last_id)
            if backlog is not None:  # what waited before this connection goes out first
                await self._deliver(client, until=backlog)
            for message in self._on_connect():
                await _publish(client, message)
            self.connected.set()
            await self._relay(client)

        while not self._stopping:
            probe, acknowledged = False, False
            try:
                async with self._client_for() as client:
                    self._client = client
                    # watched from the first packet on: a broker that drops the connection (or answers
                    # garbage) right after CONNACK is a disconnect like any other, its error retrieved
                    await _until_disconnected(client, session(client))
            except aiomqtt.MqttError as exc:
                probe = not isinstance(exc, MqttConnectError)  # unreachable or lost: watch for its return
                reason = self._reason(exc)
                if self._client is not None and not acknowledged:  # connected, then nothing acknowledged
                    reason = f"the connection ended before the broker acknowledged anything (is it MQTT?): {reason}"
                self._failed(reason, backoff)
            except Exception as exc:  # TLS set-up (a missing CA file), a database error in the relay, ...
                self._failed(f"{type(exc).__name__}: {exc}", backoff, error=True)
            finally:
                self._client = None
                self.connected.clear()
            await self._wait_to_retry(backoff * random.uniform(0.8, 1.2), probe=probe)
            backoff = min(RECONNECT_MAX_S, backoff * 2)

    def _reason(self, exc: aiomqtt.MqttError) -> str:
        """What went wrong, in words an operator can act on."""
        text, cause = str(exc), exc.__cause__
        if "timed out" in text.lower() and self._client is None:
            where = f"{self.config.host}:{self.config.port}"
            return f"no MQTT answer within {PUBLISH_TIMEOUT_S:g} s: is {where} an MQTT broker?"
        if isinstance(cause, aiomqtt.MqttError) and str(cause) != text:
            return f"{text}: {cause}"
        return text

    def _failed(self, reason: str, backoff: float, *, error: bool = False) -> None:
        if self._stopping:
            return
        self.last_error = reason
        log.log(
            logging.ERROR if error else logging.WARNING,
            "mqtt: %s:%d unavailable (%s); retrying within %.0f s",
            self.config.host,
            self.config.port,
            reason,
            backoff,
        )

    async def _wait_to_retry(self, delay: float, *, probe: bool) -> None:
        """Until `delay` has passed, the publisher stops, or (with `probe`) the broker's port accepts a
        connection again."""
        deadline = asyncio.get_running_loop().time() + delay
        while not self._stopping and asyncio.get_running_loop().time() < deadline:
            if probe and await _port_open(self.config.host, self.config.port):
                return
            await asyncio.sleep(PROBE_INTERVAL_S)

    async def _deliver(self, client: aiomqtt.Client, until: int | None = None) -> int:
        """Publish pending outbox messages in order (those up to id `until`, when given); returns how many."""

        async def send(message: Message) -> None:
            await _publish(client, message)
            self.delivered += 1

        return await deliver_waiting(self.outbox, send, until=until, stopping=lambda: self._stopping)

    async def _relay(self, client: aiomqtt.Client) -> None:
        while not self._stopping:
            self._wake.clear()
            if not await self._deliver(client):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    async def publish_now(self, message: Message) -> bool:
        """Best effort, for state that is re-published anyway (camera status): False when offline."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        try:
            await _publish(client, message)
        except aiomqtt.MqttError:
            return False
        return True

    async def announce(self) -> None:
        """Say again what a connect says (the rules or cameras changed); nothing while offline: the next
        connect says it."""
        if self.connected.is_set():
            for message in self._on_connect():
                await self.publish_now(message)

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


async def _publish(client: aiomqtt.Client, message: Message) -> None:
    """Publish with the message's MQTT options (QoS 1 unless it says otherwise); with QoS 1 this returns
    once the broker acknowledged it."""
    options = message.options
    await client.publish(
        message.address, message.payload, qos=int(options.get("qos", 1)), retain=bool(options.get("retain", False))
    )


class _Client(aiomqtt.Client):
    """aiomqtt's client, but a connection lost while it is being set up (a broker that sends garbage
    right after CONNACK) leaves no "Future exception was never retrieved" in the log: aiomqtt replaces
    that disconnect's future unseen at the end of connecting. The loss itself still surfaces: the first
    publish then fails as "not connected"."""

    def _on_disconnect(self, *args: Any, **kwargs: Any) -> None:
        super()._on_disconnect(*args, **kwargs)
        if self._disconnected.done() and not self._disconnected.cancelled():
            self._disconnected.exception()  # marks it retrieved; the watcher still reads it


class TlsSetupError(ConfigurationError):
    """The TLS settings cannot be used as configured (the CA file is missing or not a certificate)."""


async def _until_disconnected(client: aiomqtt.Client, work: Coroutine[Any, Any, None]) -> None:
    """Run `work` until it ends or the connection drops (then MqttError), whichever comes first."""
    relay = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(client))
    try:
        done, _ = await asyncio.wait((relay, watch), return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # the relay's error, or the disconnect
    finally:
        for task in (relay, watch):
            task.cancel()
        await asyncio.gather(relay, watch, return_exceptions=True)


async def _disconnected(client: aiomqtt.Client) -> None:
    """Returns never: raises MqttError when the broker connection is lost (nothing is subscribed, so
    no message ever arrives; the iteration is how aiomqtt reports a disconnect)."""
    async for _message in client.messages:
        pass
    raise aiomqtt.MqttError("disconnected")


async def _port_open(host: str, port: int) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_INTERVAL_S)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
