"""The outbox: each output's messages, committed with their events, taken in order, deleted once delivered."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, delete, func, select, update

from streamwatch.store.db import Database
from streamwatch.store.message import Message, Queued
from streamwatch.store.models import OutboxMessage


def row(message: Message, *, owner: str, sink: str) -> OutboxMessage:
    return OutboxMessage(
        address=message.address,
        payload=message.payload,
        options=json.dumps(dict(message.options)),
        owner=owner,
        sink=sink,
    )


class Outbox:
    """One output's queue of one instance: instances sharing a database (camera shards) each relay their
    own, and every output its own."""

    def __init__(self, database: Database, owner: str = "", sink: str = "mqtt") -> None:
        self.db = database
        self.owner = owner
        self.sink = sink

    def add(self, messages: Sequence[Message]) -> None:
        with self.db.session() as session, session.begin():
            session.add_all(row(m, owner=self.owner, sink=self.sink) for m in messages)

    def _mine(self) -> ColumnElement[bool]:
        return and_(OutboxMessage.owner == self.owner, OutboxMessage.sink == self.sink)

    def pending(self, limit: int = 100) -> list[Queued]:
        """The oldest undelivered messages, in the order they were committed."""
        with self.db.session() as session:
            query = select(OutboxMessage).where(self._mine()).order_by(OutboxMessage.id).limit(limit)
            return [Queued(r.id, Message(r.address, r.payload, json.loads(r.options))) for r in session.scalars(query)]

    def delivered(self, message_id: int) -> None:
        with self.db.session() as session, session.begin():
            session.execute(delete(OutboxMessage).where(OutboxMessage.id == message_id))

    def failed(self, message_id: int) -> None:
        with self.db.session() as session, session.begin():
            session.execute(
                update(OutboxMessage).where(OutboxMessage.id == message_id).values(attempts=OutboxMessage.attempts + 1)
            )

    def last_id(self) -> int | None:
        """The id of the newest message waiting (None: nothing waits)."""
        with self.db.session() as session:
            return session.scalar(select(func.max(OutboxMessage.id)).where(self._mine()))

    def size(self) -> int:
        with self.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(OutboxMessage).where(self._mine())) or 0)
