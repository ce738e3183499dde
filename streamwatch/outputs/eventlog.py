"""The event log output: every event as one line of JSON appended to a file (`[event_log]`), for an
audit trail or a log shipper (Vector, Fluent Bit, Filebeat). A line is written and synced to disk before
its message leaves the outbox; a file that cannot be written (a full disk, a read-only folder) holds the
lines back, retried, while the other outputs go on."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from streamwatch.alerts.payload import event_payload
from streamwatch.outputs.relay import Relay, RelayedOutput
from streamwatch.store.message import Message
from streamwatch.store.models import Event
from streamwatch.store.outbox import Outbox


class EventLog(RelayedOutput):
    name = "event_log"
    check = "event_log"

    def __init__(self, path: Path, outbox: Outbox, *, retry_initial_s: float = 1.0) -> None:
        self.path = path
        self.relay = Relay("event log", outbox, self._append, retry_initial_s=retry_initial_s)

    def event_messages(self, event: Event, snapshot_jpeg: bytes | None, media_dir: Path | None) -> list[Message]:
        return [Message(str(self.path), json.dumps(event_payload(event, media_dir)).encode())]

    async def _append(self, message: Message) -> None:
        await asyncio.to_thread(self._write, message.payload)

    def _write(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as file:
            file.write(line + b"\n")
            file.flush()
            os.fsync(file.fileno())
