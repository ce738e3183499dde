"""Camera sharding: N instances share the cameras of one config, each camera on exactly one of them.

A camera's shard is a stable hash of its id (SHA-256, not Python's per-process `hash`), so every
instance computes the same assignment from the same config without talking to the others, and
adding a camera moves no other camera. Instances share one MQTT broker and one PostgreSQL database;
each relays only its own outbox messages and announces its own availability topic.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, spec: str) -> Shard:
        match = _SPEC.match(spec)
        if not match:
            raise ValueError(f"expected I/N like 2/3, got {spec!r}")
        index, count = int(match[1]), int(match[2])
        if not 1 <= index <= count <= 1000:
            raise ValueError(f"expected 1 <= I <= N <= 1000 in I/N, got {spec!r}")
        return cls(index, count)

    @property
    def name(self) -> str:
        """The instance's name in MQTT topics and outbox rows; empty for a single instance."""
        return "" if self.count == 1 else f"shard-{self.index}-of-{self.count}"

    def of(self, camera_id: str) -> int:
        """The 1-based shard that owns `camera_id`."""
        digest = hashlib.sha256(camera_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count + 1

    def select(self, cameras: Iterable[T], key: str = "id") -> list[T]:
        return [camera for camera in cameras if self.owns(getattr(camera, key))]

    def owns(self, camera_id: str) -> bool:
        """Whether this shard watches `camera_id`."""
        return self.of(camera_id) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
