"""Event history on a real SQLite file and a real PostgreSQL database: migrations, WAL, one transaction
per event, queries, retention, the outbox."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect
from support.events import new_event

from streamwatch.store.db import Database
from streamwatch.store.events import EventFilter, EventStore, Outgoing
from streamwatch.store.message import Message
from streamwatch.store.models import Event
from streamwatch.store.outbox import Outbox
from streamwatch.vocabulary import Verdict


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'events.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[EventStore]:
    store = EventStore(Database.open(database_url), tmp_path / "snapshots")
    yield store
    store.db.close()


def test_a_new_database_is_migrated_to_the_newest_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "data" / "streamwatch.db"
    database = Database.open(f"sqlite:///{path}")
    assert {"events", "outbox", "alert_state", "alembic_version"} <= set(inspect(database.engine).get_table_names())
    database.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0017"
    Database.open(f"sqlite:///{path}").close()  # opening again is a no-op migration


def test_an_event_its_snapshot_and_its_messages_are_recorded_together(store: EventStore) -> None:
    outbox = Outbox(store.db)

    def messages(event: Event) -> Outgoing:
        return {
            "mqtt": [Message("sw/events", event.uid.encode()), Message("sw/gate/fence/state", b"ON", {"retain": True})]
        }

    event = store.record(new_event("e1"), b"\xff\xd8jpeg", messages)
    assert event.snapshot == f"gate/{event.frame_at:%Y-%m-%d}/e1.jpg"
    assert store.snapshot_path(event).read_bytes() == b"\xff\xd8jpeg"  # type: ignore[union-attr]
    assert [m.message.address for m in outbox.pending()] == ["sw/events", "sw/gate/fence/state"]
    assert outbox.pending()[1].message.options == {"retain": True}
    assert store.get("e1").confidence == 0.93  # type: ignore[union-attr]
    assert store.get("e1").created_at.tzinfo is not None  # type: ignore[union-attr]


def test_a_failing_message_builder_leaves_neither_event_nor_messages(store: EventStore) -> None:
    def broken(_event: object) -> Outgoing:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.record(new_event("e2"), None, broken)
    assert store.get("e2") is None and Outbox(store.db).size() == 0


def test_events_filter_and_page_newest_first(store: EventStore) -> None:
    for index in range(5):
        store.record(new_event(f"g{index}", camera="gate"))
    store.record(new_event("y0", camera="yard", rule="crowd", kind="resolved"))
    assert [e.uid for e in store.list(limit=3)] == ["y0", "g4", "g3"]
    assert [e.uid for e in store.list(limit=3, offset=3)] == ["g2", "g1", "g0"]
    assert [e.uid for e in store.list(EventFilter(camera="yard"))] == ["y0"]
    assert [e.uid for e in store.list(EventFilter(rule="crowd", kind="resolved"))] == ["y0"]
    assert store.list(EventFilter(kind="update")) == [] and store.count(EventFilter(camera="gate")) == 5
    assert len(store.list(EventFilter(since=datetime.now(UTC) - timedelta(minutes=1)))) == 6
    assert store.list(EventFilter(until=datetime.now(UTC) - timedelta(minutes=1))) == []


def test_review_marks_an_event_and_filters_find_it(store: EventStore) -> None:
    for uid in ("a", "b", "c"):
        store.record(new_event(uid))
    reviewed = store.review("b", Verdict.FALSE_POSITIVE, "shadow of the flag")
    assert reviewed is not None and reviewed.verdict == "false_positive" and reviewed.reviewed_at is not None
    store.review("c", None, "")  # seen, no verdict
    assert [e.uid for e in store.list(EventFilter(reviewed=False))] == ["a"]
    assert [e.uid for e in store.list(EventFilter(reviewed=True))] == ["c", "b"]
    assert store.get("b").note == "shadow of the flag"  # type: ignore[union-attr]
    assert store.count(EventFilter(verdict="false_positive")) == 1
    assert store.review("nope", Verdict.CONFIRMED, None) is None
    with pytest.raises(ValueError, match="verdict must be one of"):
        store.review("a", "maybe", None)  # type: ignore[arg-type]  # what a careless caller might pass


def test_the_migrations_build_exactly_the_schema_of_the_models(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from streamwatch.store.models import Base
    from streamwatch.store.search import outside_the_models

    def modelled(_object: object, name: str | None, _type: str, _reflected: bool, _compare_to: object) -> bool:
        return not outside_the_models(name)  # the search's FTS table and index are the migration's own

    database = Database.open(database_url)
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": modelled})
        assert compare_metadata(context, Base.metadata) == []
    database.close()


def test_an_old_database_is_upgraded_in_place_keeping_its_rows(database_url: str, tmp_path: Path) -> None:
    from alembic import command

    from streamwatch.store.db import alembic_config

    url = database_url
    database = Database.open(url, migrate=False)
    with database.engine.begin() as connection:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.exec_driver_sql(
            "INSERT INTO events (uid, alert_id, kind, camera, rule, severity, title, question, answer, latency_s, "
            "model, frame_at, created_at) VALUES ('old1', 'old1', 'open', 'gate', 'fence', 'critical', 't', 'q', "
            "'yes', 0.1, 'm', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    database.migrate()
    store = EventStore(database, tmp_path / "snapshots")
    old = store.get("old1")
    assert old is not None and old.verdict is None and old.created_at.year == 2026
    database.close()


def test_outbox_keeps_commit_order_and_forgets_delivered_messages(store: EventStore) -> None:
    outbox = Outbox(store.db)
    outbox.add([Message(f"t/{index}", b"x") for index in range(5)])
    first = outbox.pending(2)
    assert [m.message.address for m in first] == ["t/0", "t/1"]
    outbox.failed(first[0].id)
    outbox.delivered(first[0].id)
    assert [m.message.address for m in outbox.pending()] == ["t/1", "t/2", "t/3", "t/4"]


def test_instances_sharing_a_database_relay_only_their_own_messages(store: EventStore, tmp_path: Path) -> None:
    shard2 = EventStore(store.db, tmp_path / "snapshots", owner="shard-2-of-2")

    def messages(event: Event) -> Outgoing:
        return {"mqtt": [Message("sw/events", event.uid.encode())]}

    store.record(new_event("a"), None, messages)
    shard2.record(new_event("b", camera="dock"), None, messages)
    Outbox(store.db).add([Message("sw/available", b"online")])
    assert [m.message.payload for m in Outbox(store.db).pending()] == [b"a", b"online"]
    assert [m.message.payload for m in Outbox(store.db, owner="shard-2-of-2").pending()] == [b"b"]
    assert Outbox(store.db).size() == 2 and Outbox(store.db, owner="shard-2-of-2").size() == 1
    assert {e.uid for e in store.list(EventFilter())} == {"a", "b"}  # the history is shared


def test_instances_starting_together_migrate_a_new_postgresql_database_once(postgres_url: str) -> None:
    import threading

    errors: list[BaseException] = []

    def open_database() -> None:
        try:
            Database.open(postgres_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_database) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    database = Database.open(postgres_url)
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0017"
    database.close()


def test_retention_deletes_old_rows_and_their_snapshots(store: EventStore) -> None:
    old = store.record(new_event("old"), b"jpeg-old")
    fresh = store.record(new_event("new"), b"jpeg-new")
    with store.db.session() as session, session.begin():  # age one event by 40 days
        row = session.get(type(old), old.id)
        assert row is not None
        row.created_at = datetime.now(UTC) - timedelta(days=40)
    assert store.prune(datetime.now(UTC) - timedelta(days=30)) == (1, 1)
    assert store.get("old") is None and store.get("new") is not None
    assert not store.snapshot_path(old).exists()  # type: ignore[union-attr]
    assert store.snapshot_path(fresh).exists()  # type: ignore[union-attr]


def test_messages_waiting_in_an_old_outbox_become_mqtt_messages_with_their_options(
    database_url: str, tmp_path: Path
) -> None:
    from alembic import command

    from streamwatch.store.db import alembic_config

    database = Database.open(database_url, migrate=False)
    with database.engine.begin() as connection:
        config = alembic_config(database_url)
        config.attributes["connection"] = connection
        command.upgrade(config, "0004")
        for topic, retain in (("sw/events", False), ("sw/gate/fence/state", True)):
            connection.exec_driver_sql(
                "INSERT INTO outbox (topic, payload, qos, retain, attempts, created_at, owner) VALUES "
                f"('{topic}', '{topic}', 1, {'true' if retain else 'false'}, 0, '2026-11-29 00:00:00', '')"
            )
    database.migrate()  # to 0005: one queue per output
    waiting = Outbox(database, sink="mqtt").pending()
    assert [(q.message.address, dict(q.message.options)) for q in waiting] == [
        ("sw/events", {"qos": 1, "retain": False}),
        ("sw/gate/fence/state", {"qos": 1, "retain": True}),
    ]
    assert Outbox(database, sink="event_log").size() == 0
    database.close()
