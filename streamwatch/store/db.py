"""The database: an engine for the configured URL (SQLite by default, WAL), migrated to the newest schema."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from streamwatch.config import Settings
from streamwatch.errors import StartupError
from streamwatch.redact import scrub
from streamwatch.store.urls import engine_url

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x57A3_1A7C  # PostgreSQL advisory lock held while one instance migrates


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


class Database:
    """Engine + session factory. `Database.open(url)` creates the file's folder and migrates."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Database:
        parsed = engine_url(url)
        options: dict[str, Any] = {"pool_pre_ping": True}  # a restarted PostgreSQL server: reconnect
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        engine = create_engine(parsed, **options)
        if parsed.get_backend_name() == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        database = cls(engine)
        if migrate:
            database.migrate()
        return database

    def migrate(self) -> None:
        """Upgrade the schema to the newest migration (a no-op when it is current)."""
        config = alembic_config(self.engine.url.render_as_string(hide_password=False))
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # instances sharing the database start together
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            current = MigrationContext.configure(connection).get_current_revision()
            head = ScriptDirectory.from_config(config).get_current_head()
            if current != head:
                log.info("database: migrating schema %s -> %s", current or "empty", head)
                config.attributes["connection"] = connection
                command.upgrade(config, "head")

    def problem(self) -> str | None:
        """Why the database cannot take writes now (it does not answer; SQLite: its folder is read-only),
        or None: for readiness checks."""
        try:
            with self.engine.begin() as connection:
                connection.exec_driver_sql("SELECT 1")
        except Exception as exc:
            return f"the database does not answer: {type(exc).__name__}"
        path = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not path or path == ":memory:":
            return None
        folder = os.path.dirname(os.path.abspath(path))
        return None if os.access(folder, os.W_OK) else f"cannot write to {folder}"

    def session(self) -> Session:
        return self.sessions()

    def close(self) -> None:
        self.engine.dispose()


def open_database(settings: Settings) -> Database:
    """The configured database, migrated; a StartupError naming `storage.database_url` (password
    masked) when it cannot be reached or created."""
    url = settings.database_url()
    try:
        return Database.open(url)
    except (SQLAlchemyError, OSError) as exc:
        reason = scrub(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])
        shown = make_url(url).render_as_string(hide_password=True)
        raise StartupError(
            settings.problem(("storage", "database_url"), f"cannot open the database {shown}: {reason}")
        ) from None


@contextlib.asynccontextmanager
async def opened_database(settings: Settings) -> AsyncIterator[Database]:
    """The configured database (migrated, off the event loop) for the life of the block."""
    database = await asyncio.to_thread(open_database, settings)
    try:
        yield database
    finally:
        database.close()


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL: readers never block the writer; NORMAL sync is durable across crashes of the process."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
