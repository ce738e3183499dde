"""Which Home Assistant discovery configs this instance published (survives restarts): a camera or
rule removed from the config, even while the service was stopped, has its configs cleared."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select

from streamwatch.store.db import Database
from streamwatch.store.models import DiscoveryTopic


class DiscoveryRecord:
    def __init__(self, database: Database, owner: str = "") -> None:
        self.db, self.owner = database, owner

    def replace(self, topics: Iterable[str]) -> list[str]:
        """Record `topics` as what this instance publishes now; returns those it published before and no
        longer does (to be cleared with an empty retained message)."""
        now = set(topics)
        with self.db.session() as session, session.begin():
            before = set(session.scalars(select(DiscoveryTopic.topic).where(DiscoveryTopic.owner == self.owner)))
            gone = before - now
            new = sorted(now - before)
            for chunk in range(0, max(len(gone), len(new)), 500):
                # ours no longer; and new ones another shard recorded (a camera moved here): ours now
                stale = sorted(gone)[chunk : chunk + 500] + new[chunk : chunk + 500]
                session.execute(delete(DiscoveryTopic).where(DiscoveryTopic.topic.in_(stale)))
            session.add_all(DiscoveryTopic(topic=topic, owner=self.owner) for topic in new)
        return sorted(gone)
