"""The outbox table: messages committed with their events, taken in order, deleted once delivered."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select, update

from streamwatch.store.db import Database
from streamwatch.store.events import Message
from streamwatch.store.models import OutboxMessage


class Outbox:
    def __init__(self, database: Database) -> None:
        self.db = database

    def add(self, messages: Sequence[Message]) -> None:
        with self.db.session() as session, session.begin():
            session.add_all(
                OutboxMessage(topic=m.topic, payload=m.payload, qos=m.qos, retain=m.retain) for m in messages
            )

    def pending(self, limit: int = 100) -> list[OutboxMessage]:
        """The oldest undelivered messages, in the order they were committed."""
        with self.db.session() as session:
            return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id).limit(limit)))

    def delivered(self, message_id: int) -> None:
        with self.db.session() as session, session.begin():
            session.execute(delete(OutboxMessage).where(OutboxMessage.id == message_id))

    def failed(self, message_id: int) -> None:
        with self.db.session() as session, session.begin():
            session.execute(
                update(OutboxMessage).where(OutboxMessage.id == message_id).values(attempts=OutboxMessage.attempts + 1)
            )

    def size(self) -> int:
        with self.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)
