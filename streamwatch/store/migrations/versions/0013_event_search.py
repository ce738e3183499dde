"""event search: full text over the question, answer, description, review note, camera, rule and
title of every event (SQLite FTS5 kept in step by triggers; PostgreSQL a GIN index of the same
expression the searches use)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = "question, answer, description, note, camera, rule, title"
NEW = "new.question, new.answer, new.description, new.note, new.camera, new.rule, new.title"
OLD = "old.question, old.answer, old.description, old.note, old.camera, old.rule, old.title"
POSTGRES_DOCUMENT = (
    "to_tsvector('simple', coalesce(question, '') || ' ' || coalesce(answer, '') || ' ' || "
    "coalesce(description, '') || ' ' || coalesce(note, '') || ' ' || camera || ' ' || rule || ' ' || title)"
)  # streamwatch/store/search.py searches with the same expression


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_events_search ON events USING GIN ({POSTGRES_DOCUMENT})")
        return
    op.execute(
        f"CREATE VIRTUAL TABLE events_fts USING fts5({COLUMNS}, content='events', content_rowid='id', "
        "tokenize='unicode61 remove_diacritics 2')"
    )
    op.execute(
        f"CREATE TRIGGER events_fts_insert AFTER INSERT ON events BEGIN "
        f"INSERT INTO events_fts(rowid, {COLUMNS}) VALUES (new.id, {NEW}); END"
    )
    op.execute(
        f"CREATE TRIGGER events_fts_delete AFTER DELETE ON events BEGIN "
        f"INSERT INTO events_fts(events_fts, rowid, {COLUMNS}) VALUES ('delete', old.id, {OLD}); END"
    )
    op.execute(
        f"CREATE TRIGGER events_fts_update AFTER UPDATE ON events BEGIN "
        f"INSERT INTO events_fts(events_fts, rowid, {COLUMNS}) VALUES ('delete', old.id, {OLD}); "
        f"INSERT INTO events_fts(rowid, {COLUMNS}) VALUES (new.id, {NEW}); END"
    )
    op.execute("INSERT INTO events_fts(events_fts) VALUES ('rebuild')")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_events_search")
        return
    for trigger in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER events_fts_{trigger}")
    op.execute("DROP TABLE events_fts")
