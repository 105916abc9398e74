"""PostgreSQL for the tests: Debian's cluster started when needed, a test role, and a fresh database per test.

`STAGEFLOW_TEST_DATABASE=postgresql` makes `test_database_url` hand every test its own new PostgreSQL database
(dropped in the background when the test's stack closes, else at the end of the run); without it, the test's
SQLite file. The new databases are copies of one made at the run's first test with the app's schema
(CREATE DATABASE ... TEMPLATE), which is quicker than creating the tables in each. tests/conftest.py uses it in
`stack_settings`:

    from tests.postgres_support import postgres_test_databases, test_database_url  # noqa: F401
    ...
        database_url=test_database_url(tmp_path),

`python -m tests.postgres_support prepare` starts the server and creates the role (what `make test-postgres`
runs first). It exits 0 when PostgreSQL is ready, and 3 with the reason when it cannot be had here (not root,
no `pg_ctlcluster` and no apt-get).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from tests.debian import NotInstallable, install, machine_lock

ENV = "STAGEFLOW_TEST_DATABASE"
HOST = os.environ.get("STAGEFLOW_TEST_PG_HOST", "127.0.0.1")
PORT = int(os.environ.get("STAGEFLOW_TEST_PG_PORT", "5432"))
ROLE = "stageflow_test"
PASSWORD = "stageflow_test"
PREFIX = "stageflow_test_"
UNAVAILABLE_EXIT = 3
START_TIMEOUT = 60.0
DROP_ATTEMPTS = 20

_created: list[str] = []
_numbers = itertools.count(1)
_ready: list[str] = []
_schema_templates: list[str] = []
_droppers: list[ThreadPoolExecutor] = []
_dropping: list[Future] = []


class PostgresUnavailable(Exception):
    """PostgreSQL cannot be had on this machine; the message says why."""


def url(database: str = "postgres") -> str:
    return f"postgresql+psycopg://{ROLE}:{PASSWORD}@{HOST}:{PORT}/{database}"


def wanted() -> bool:
    """True when the run asked for PostgreSQL (`STAGEFLOW_TEST_DATABASE=postgresql`)."""
    return os.environ.get(ENV, "").lower() in ("postgresql", "postgres")


def _reachable() -> bool:
    engine = create_engine(url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except OperationalError:
        return False
    finally:
        engine.dispose()


def _run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _psql(sql: str) -> str:
    done = _run(["su", "postgres", "-c", f"psql -v ON_ERROR_STOP=1 -At -p {PORT} -c \"{sql}\""])
    if done.returncode != 0:
        raise PostgresUnavailable(f"psql as postgres failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def _install() -> None:
    try:
        install("postgresql", lambda: shutil.which("pg_ctlcluster") is not None)
    except NotInstallable as reason:
        raise PostgresUnavailable(str(reason)) from None


def _clusters() -> list[tuple[str, str, int, str]]:
    """(version, name, port, status) of every cluster `pg_lsclusters` knows."""
    done = _run(["pg_lsclusters", "--no-header"])
    found = []
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2].isdigit():
            found.append((parts[0], parts[1], int(parts[2]), parts[3]))
    return found


def ensure_server() -> str:
    """Starts Debian's PostgreSQL cluster on PORT when it is down, and makes the test role; returns the admin URL."""
    if _ready:
        return _ready[0]
    if _reachable():
        _ready.append(url())
        return url()
    with machine_lock():
        return _start_server()


def _start_server() -> str:
    if _reachable():
        _ready.append(url())
        return url()
    if os.geteuid() != 0:
        raise PostgresUnavailable(
            f"no PostgreSQL answers on {HOST}:{PORT} for role {ROLE}, and starting one needs root "
            f"(run as root, or start PostgreSQL and create role {ROLE} with password {PASSWORD} and CREATEDB)"
        )
    if shutil.which("pg_ctlcluster") is None:
        _install()
    clusters = [cluster for cluster in _clusters() if cluster[2] == PORT]
    if not clusters:
        raise PostgresUnavailable(f"pg_lsclusters shows no cluster on port {PORT}")
    version, name, _, status = clusters[0]
    if status != "online":
        done = _run(["pg_ctlcluster", version, name, "start"])
        if done.returncode != 0:
            raise PostgresUnavailable(f"pg_ctlcluster {version} {name} start failed: {done.stderr.strip()}")
    deadline = time.monotonic() + START_TIMEOUT
    while _run(["pg_isready", "-h", HOST, "-p", str(PORT)]).returncode != 0:
        if time.monotonic() > deadline:
            raise PostgresUnavailable(
                f"PostgreSQL {version}/{name} did not accept connections within {START_TIMEOUT:.0f} s"
            )
        time.sleep(0.5)
    if _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'") != "1":
        _psql(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
    # Test databases are thrown away: commits need not wait for the disk.
    _psql(f"ALTER ROLE {ROLE} SET synchronous_commit = off")
    if not _reachable():
        raise PostgresUnavailable(f"role {ROLE} cannot log in on {HOST}:{PORT} with its password")
    _ready.append(url())
    return url()


def create_database(label: str = "", template: str | None = None) -> str:
    """A new database owned by the test role, empty or a copy of the database `template`; returns its URL."""
    ensure_server()
    name = f"{PREFIX}{os.getpid()}_{next(_numbers)}_{label or uuid.uuid4().hex[:6]}".lower()[:63]
    engine = create_engine(url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    finally:
        engine.dispose()
    _created.append(name)
    return url(name)


def drop_database(database_url: str) -> None:
    """Drops the database, ending the sessions still on it. An autovacuum worker on it cannot be ended by the test
    role (PostgreSQL refuses with InsufficientPrivilege); it is done within moments, so the drop is tried again."""
    name = make_url(database_url).database
    engine = create_engine(url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        for attempt in range(DROP_ATTEMPTS):
            try:
                with engine.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except ProgrammingError:
                if attempt == DROP_ATTEMPTS - 1:
                    raise
                time.sleep(0.5)
    finally:
        engine.dispose()
    with contextlib.suppress(ValueError):  # dropped by another thread meanwhile
        _created.remove(name)


def schema_template() -> str:
    """The name of this run's database with the app's schema at the newest migration, made on the first call."""
    if not _schema_templates:
        from models.db import create_schema, make_engine

        template_url = create_database("schema")
        engine = make_engine(template_url)
        try:
            create_schema(engine)
        finally:
            engine.dispose()
        _schema_templates.append(make_url(template_url).database)
    return _schema_templates[0]


def test_database_url(tmp_path: Path) -> str:
    """The database of one test: a new PostgreSQL database with the app's schema when the run asked for it, else a
    SQLite file."""
    if wanted():
        return create_database(template=schema_template())
    return f"sqlite:///{tmp_path / 'stageflow.db'}"


test_database_url.__test__ = False  # a helper, not a test


def release_database(database_url: str) -> None:
    """The test is done with its database: it is dropped in the background while the next tests run (each drop
    waits for a checkpoint, a fifth of a second or more). Not a database this module made: nothing happens."""
    if make_url(database_url).database not in _created:
        return
    if not _droppers:
        _droppers.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-test-database"))
    _dropping.append(_droppers[0].submit(drop_database, database_url))


@pytest.fixture(scope="session", autouse=True)
def postgres_test_databases() -> Iterator[None]:
    """Drops the databases this run created, at its end."""
    yield
    for dropped in _dropping:
        dropped.result()
    _dropping.clear()
    for name in list(_created):
        drop_database(url(name))
    _schema_templates.clear()


def main(argv: list[str]) -> int:
    if argv[1:] != ["prepare"]:
        print("usage: python -m tests.postgres_support prepare", file=sys.stderr)
        return 2
    try:
        admin = ensure_server()
    except PostgresUnavailable as error:
        print(f"PostgreSQL is not available: {error}")
        return UNAVAILABLE_EXIT
    print(f"PostgreSQL ready for the tests: {make_url(admin).render_as_string(hide_password=True)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
