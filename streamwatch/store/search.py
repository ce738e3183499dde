"""Full-text search over events: question, answer, description, review note, camera, rule and title
(SQLite FTS5, PostgreSQL full text; migration 0013). A search is words, each of which must appear
(as a word or the start of one); anything else in the text is ignored, so no input is a syntax error."""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, and_, literal_column, select, table, text, true

from streamwatch.errors import SearchError
from streamwatch.store.models import Event

MAX_QUERY_CHARS = 200
MAX_TERMS = 8
POSTGRES_DOCUMENT = (
    "to_tsvector('simple', coalesce(question, '') || ' ' || coalesce(answer, '') || ' ' || "
    "coalesce(description, '') || ' ' || coalesce(note, '') || ' ' || camera || ' ' || rule || ' ' || title)"
)  # the expression of migration 0013's index


def outside_the_models(name: str | None) -> bool:
    """Whether a database object is the search's own (migration 0013), not one of the models' tables:
    the FTS5 table with its shadow tables, the PostgreSQL index."""
    return name is not None and (name.startswith("events_fts") or name == "ix_events_search")


def terms(query: str) -> list[str]:
    """The words searched for: letters and digits, lowercased, at most MAX_TERMS."""
    if len(query) > MAX_QUERY_CHARS:
        raise SearchError(f"q: at most {MAX_QUERY_CHARS} characters")
    return re.findall(r"[^\W_]+", query.lower())[:MAX_TERMS]


def matching(dialect: str, query: str) -> ColumnElement[bool] | None:
    """A condition on events: every word of `query` is in one of its searched fields; None when the
    query has no word (no condition)."""
    words = terms(query)
    if not words:
        return None
    if dialect == "postgresql":
        tsquery = " & ".join(f"{word}:*" for word in words)
        found = text(f"{POSTGRES_DOCUMENT} @@ to_tsquery('simple', :search)").bindparams(search=tsquery)
        return and_(true(), found)
    fts = " ".join(f'"{word}"*' for word in words)
    found = text("events_fts MATCH :search").bindparams(search=fts)
    return Event.id.in_(select(literal_column("rowid")).select_from(table("events_fts")).where(found))
