"""Notification receivers and targets the notification tests share: a real HTTP server taking Apprise's
JSON webhook (`Webhook`, the `webhook` fixture), a target over a real store (`events_and_target`), and
an event committed with its messages as the alert recorder does (`record`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from streamwatch.config import CameraConfig, NotifyConfig
from streamwatch.metrics import Metrics
from streamwatch.outputs.notify import NotifyOutput, sink_of
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore, committed_since, description_of
from streamwatch.store.outbox import Outbox
from support.events import new_event
from support.helpers import REPO, free_port

TOKEN = "tok-9f3kQ2xL7pZ"  # in the target's URL: never in a log line, a metric or an error


class Webhook:
    """An HTTP server taking Apprise's JSON notifications on a fixed port; stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body) | {"path": self.path})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook/{TOKEN}"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.stop()


def events_and_target(
    tmp_path: Path, config: NotifyConfig, *, retry_max_s: float = 30.0
) -> tuple[EventStore, NotifyOutput, Metrics]:
    """A store in `tmp_path` (opened again when it exists) and a target whose limit reads its history."""
    database = Database.open(f"sqlite:///{tmp_path / 'events.db'}")
    store = EventStore(database, tmp_path / "snapshots")
    metrics = Metrics()
    camera = CameraConfig(id="gate", url="x.mp4", name="Gate", tags=["perimeter"])
    target = NotifyOutput(
        config,
        0,
        Outbox(database, sink=sink_of(f"{config.name}#1")),
        cameras=[camera],
        media_dir=store.snapshot_dir,
        public_url=None,
        counter=metrics.notifications,
        history=lambda since: committed_since(database, since, lambda _camera: True),
        description_of=lambda uid: description_of(database, uid),
        retry_initial_s=0.5,
        retry_max_s=retry_max_s,
    )
    return store, target, metrics


def record(store: EventStore, target: NotifyOutput, uid: str, **fields: Any) -> int:
    """Commit an event with this target's messages, as the alert pipeline does; returns how many."""
    queued: list[Any] = []

    def messages(event: Any) -> dict[str, Any]:
        queued.extend(target.event_messages(event, None, None))
        return {target.name: queued}

    store.record(new_event(uid, **fields), (REPO / "tests" / "data" / "snapshot.jpg").read_bytes(), messages)
    return len(queued)
