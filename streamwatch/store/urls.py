"""Database URLs: which databases streamwatch supports, and the driver each is reached with. (Kept
apart from db.py so that validating a config does not import the migration machinery.)"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

SUPPORTED = "sqlite:///path/to/file.db or postgresql://user:password@host:5432/database"


def engine_url(url: str) -> URL:
    """The URL SQLAlchemy connects with: PostgreSQL through psycopg 3 (installed with streamwatch) unless
    the URL names another driver; ValueError for databases streamwatch does not support."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        if parsed.drivername in ("postgres", "postgresql"):
            parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise ValueError(f"unsupported database {backend!r}; expected {SUPPORTED}")
    return parsed
