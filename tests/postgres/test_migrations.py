"""Alembic migrations build the schema of models/tables.py, on SQLite and on PostgreSQL.

An empty database is upgraded from the first migration to head one step at a time; autogenerate's comparison
then finds no difference between the migrated schema and SQLModel.metadata, so a model change without its
migration fails here. Downgrading to base leaves nothing behind.

The service's start (models.db.create_schema, run by the API and the worker) creates an empty database's tables
and stamps it at head, upgrades a versioned one, and adopts one made before the schema was versioned; after it,
`alembic upgrade head` has nothing to do. Processes starting together on one database take turns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from models.db import FIRST_RELEASE_REVISION, alembic_config, create_schema, make_engine
from models.tables import ApiKey
from tests.postgres_support import PostgresUnavailable, create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
STARTING_TOGETHER = 4


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrated.db'}"
    else:
        try:
            url = create_database("migrations")
        except PostgresUnavailable as error:
            pytest.skip(f"PostgreSQL unavailable: {error}")
    engine = make_engine(url)
    yield engine
    engine.dispose()
    if request.param == "postgresql":
        drop_database(url)


def upgrade(engine: Engine, config: Config, revision: str) -> None:
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_upgrade_from_the_first_migration_to_head_matches_the_models(empty_database: Engine):
    config = alembic_config()
    script = ScriptDirectory.from_config(config)
    revisions = [revision.revision for revision in reversed(list(script.walk_revisions()))]
    assert revisions and script.get_current_head() == revisions[-1]

    upgrade(empty_database, config, revisions[0])
    assert current(empty_database) == revisions[0]
    for revision in revisions[1:]:
        upgrade(empty_database, config, "+1")
        assert current(empty_database) == revision

    with empty_database.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), SQLModel.metadata
        )
    assert differences == [], f"models/tables.py and the migrations differ (make migration m=...): {differences}"
    assert set(inspect(empty_database).get_table_names()) == set(SQLModel.metadata.tables) | {"alembic_version"}


def test_downgrade_to_base_removes_every_table(empty_database: Engine):
    config = alembic_config()
    upgrade(empty_database, config, "head")
    with empty_database.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(empty_database).get_table_names()) <= {"alembic_version"}
    assert current(empty_database) is None


def differences_from_the_models(engine: Engine) -> list:
    with engine.connect() as connection:
        return compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), SQLModel.metadata
        )


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def database_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def release_before_migrations(engine: Engine) -> None:
    """The database as the release that made its tables with create_all left it: revision 0001's tables, an API
    key in them, and no alembic_version table."""
    upgrade(engine, alembic_config(), FIRST_RELEASE_REVISION)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(text(
            "INSERT INTO apikey (name, key_hash, role, revoked, created_at) "
            "VALUES ('ops', 'hash-of-the-ops-key', 'admin', false, '2026-01-05 10:00:00')"))


def api_keys(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(key.name, key.key_hash) for key in session.exec(select(ApiKey))]


def test_start_on_an_empty_database_creates_the_schema_at_head(empty_database: Engine):
    create_schema(empty_database)
    assert set(inspect(empty_database).get_table_names()) == set(SQLModel.metadata.tables) | {"alembic_version"}
    assert current(empty_database) == head()
    assert differences_from_the_models(empty_database) == []

    with Session(empty_database) as session:
        session.add(ApiKey(name="ops", key_hash="hash-of-the-ops-key"))
        session.commit()
    create_schema(empty_database)  # the next start
    deployed = subprocess.run(
        [str(Path(sys.executable).parent / "alembic"), "upgrade", "head"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "DATABASE_URL": database_url(empty_database)}, timeout=120,
    )
    assert deployed.returncode == 0, deployed.stderr
    assert "Will assume" in deployed.stderr and "Running upgrade" not in deployed.stderr, deployed.stderr
    assert current(empty_database) == head()
    assert api_keys(empty_database) == [("ops", "hash-of-the-ops-key")]


def test_start_on_a_database_made_before_migrations_stamps_and_upgrades_it(empty_database: Engine):
    release_before_migrations(empty_database)
    assert current(empty_database) is None

    create_schema(empty_database)
    assert current(empty_database) == head()
    assert differences_from_the_models(empty_database) == []
    assert api_keys(empty_database) == [("ops", "hash-of-the-ops-key")]


@pytest.mark.parametrize("made_by", ["nothing", "the release before migrations"])
def test_processes_starting_together_take_turns(empty_database: Engine, made_by: str):
    if made_by != "nothing":
        release_before_migrations(empty_database)
    url = database_url(empty_database)
    gate = threading.Barrier(STARTING_TOGETHER)
    failures: list[BaseException] = []

    def start() -> None:
        engine = make_engine(url)
        try:
            gate.wait()
            create_schema(engine)
        except BaseException as error:  # noqa: BLE001  (reported by the assertion below)
            failures.append(error)
        finally:
            engine.dispose()

    starts = [threading.Thread(target=start) for _ in range(STARTING_TOGETHER)]
    for thread in starts:
        thread.start()
    for thread in starts:
        thread.join(timeout=60)
    assert failures == []
    with empty_database.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    assert versions == [head()]
    assert differences_from_the_models(empty_database) == []
    expected = [] if made_by == "nothing" else [("ops", "hash-of-the-ops-key")]
    assert api_keys(empty_database) == expected
