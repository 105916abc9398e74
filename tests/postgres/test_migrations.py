"""Alembic migrations build the schema of models/tables.py, on SQLite and on PostgreSQL.

An empty database is upgraded from the first migration to head one step at a time; autogenerate's comparison
then finds no difference between the migrated schema and SQLModel.metadata, so a model change without its
migration fails here. Downgrading to base leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from models import tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from models.db import make_engine
from tests.postgres_support import PostgresUnavailable, create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    return config


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
