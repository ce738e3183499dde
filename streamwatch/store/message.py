"""One delivery of an output, as the outbox stores it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """Where to (an MQTT topic, a file, a URL path, ...), the bytes, and the output's own options (MQTT:
    qos and retain)."""

    address: str
    payload: bytes
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Queued:
    """A message waiting in the outbox, with its place in the queue (its commit order)."""

    id: int
    message: Message
