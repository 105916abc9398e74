"""The run's tests use the database it asked for: PostgreSQL under `make test-postgres`, else SQLite files."""

from __future__ import annotations

from sqlalchemy import text

from tests.postgres_support import wanted


async def test_each_test_gets_its_own_database_of_the_chosen_kind(stack):
    expected = "postgresql" if wanted() else "sqlite"
    assert stack.engine.dialect.name == expected
    with stack.engine.connect() as connection:
        if expected == "postgresql":
            name = connection.execute(text("SELECT current_database()")).scalar_one()
            assert name.startswith("stageflow_test_")
        else:
            assert stack.settings.effective_database_url.endswith("/stageflow.db")
