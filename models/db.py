"""Database engine and sessions."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool
from sqlmodel import Session, SQLModel, create_engine

from models import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

log = logging.getLogger(__name__)
ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
# Databases made before the schema was versioned (create_all, no alembic_version table) have this revision's tables.
FIRST_RELEASE_REVISION = "0001"
SCHEMA_LOCK_KEY = 0x5354_4147  # pg_advisory_xact_lock key held while the schema is checked and changed
WAL_ATTEMPTS = 50


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Connections are kept for reuse (opening one re-reads the schema), and the overflow is unbounded so
        # that a request holding its session across an await never makes another request wait for one.
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, poolclass=QueuePool,
            pool_size=20, max_overflow=-1,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            _write_ahead_log(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=80, pool_timeout=10)


def _write_ahead_log(cursor: Any) -> None:
    """Puts the database in WAL mode. Switching a new file takes it for a moment without waiting for the busy
    timeout, so processes opening it together (API and worker) try again until one of them has switched it."""
    for attempt in range(WAL_ATTEMPTS):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


def alembic_config(connection: Connection | None = None) -> Config:
    """The repository's alembic.ini; migrations run on `connection` (inside its transaction) when one is given."""
    config = Config(str(ALEMBIC_INI))
    config.attributes["configure_logger"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def migration_scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def create_schema(engine: Engine) -> None:
    """Brings the database to the schema of models.tables and records it as Alembic's head revision.

    An empty database gets the tables and is stamped at head; one with an alembic_version table is upgraded to
    head (nothing to do when it is there); one with the tables but no alembic_version (made before the schema was
    versioned) is stamped at FIRST_RELEASE_REVISION, then upgraded. Processes starting together on one database
    (API and worker) take turns: the check and the change run in one transaction that holds an advisory lock on
    PostgreSQL and SQLite's write lock (BEGIN IMMEDIATE).
    """
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        existing = set(inspect(connection).get_table_names())
        script = migration_scripts()
        if "alembic_version" in existing:
            current = set(MigrationContext.configure(connection).get_current_heads())
            if current != set(script.get_heads()):
                log.info("Upgrading the database schema from %s to head", ", ".join(sorted(current)) or "base")
                command.upgrade(alembic_config(connection), "head")
        elif existing & set(SQLModel.metadata.tables):
            log.info("Database schema without a revision: stamping %s, upgrading to head", FIRST_RELEASE_REVISION)
            MigrationContext.configure(connection).stamp(script, FIRST_RELEASE_REVISION)
            command.upgrade(alembic_config(connection), "head")
        else:
            SQLModel.metadata.create_all(connection, checkfirst=False)
            MigrationContext.configure(connection).stamp(script, "head")
        connection.commit()


class HoldingSession(Session):
    """A session that holds every row it loads until it closes. SQLAlchemy's sessions hold their rows weakly, so a row
    read, used and let go (a user looked up to check that it exists) is read again from the database by the next
    lookup in the same transaction; held, the next lookup finds it in the session."""


@event.listens_for(HoldingSession, "loaded_as_persistent")
def _hold(session: Session, instance: Any) -> None:
    session.info.setdefault("held", []).append(instance)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session (holding what it loads) whose work is committed at the end, or rolled back on error."""
    with HoldingSession(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
