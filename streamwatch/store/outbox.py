"""The outbox table: messages committed with their events, taken in order, deleted once delivered."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select, update

from streamwatch.store.db import Database
from streamwatch.store.events import Message
from streamwatch.store.models import OutboxMessage


class Outbox:
    """One instance's messages: instances sharing a database (camera shards) each relay their own."""

    def __init__(self, database: Database, owner: str = "") -> None:
        self.db = database
        self.owner = owner

    def add(self, messages: Sequence[Message]) -> None:
        with self.db.session() as session, session.begin():
            session.add_all(
                OutboxMessage(topic=m.topic, payload=m.payload, qos=m.qos, retain=m.retain, owner=self.owner)
                for m in messages
            )

    def pending(self, limit: int = 100) -> list[OutboxMessage]:
        """The oldest undelivered messages, in the order they were committed."""
        with self.db.session() as session:
            query = select(OutboxMessage).where(OutboxMessage.owner == self.owner).order_by(OutboxMessage.id)
            return list(session.scalars(query.limit(limit)))

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
            query = select(func.max(OutboxMessage.id)).where(OutboxMessage.owner == self.owner)
            return session.scalar(query)

    def size(self) -> int:
        with self.db.session() as session:
            query = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.owner == self.owner)
            return int(session.scalar(query) or 0)
