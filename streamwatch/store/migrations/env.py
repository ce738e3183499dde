"""Alembic environment: streamwatch runs migrations itself at start-up (store/db.py), on its connection."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool

from streamwatch.store.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # `alembic` command line: connect from sqlalchemy.url
        engine = engine_from_config(config.get_section(config.config_ini_section) or {}, poolclass=pool.NullPool)
        with engine.connect() as connection:
            _migrate(connection)
        return
    _migrate(connection)


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
