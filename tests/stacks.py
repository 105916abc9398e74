"""Assembling a test's CRM: its own database, worker and API on a shared Temporal server.

Kept apart from conftest.py so that modules importing these helpers share one id counter.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.rule import Deps
from models.db import create_schema, make_engine
from models.settings import Settings, get_settings
from models.tables import ApiKey
from scripts import local
from tests.postgres_support import release_database, test_database_url

ADMIN_KEY = "test-admin-key-0123456789"
MEMBER_KEY = "test-member-key-0123456789"
ID_BLOCK = 100_000
_id_blocks = itertools.count(1)


def binary(name: str) -> str:
    try:
        return local.binary(name)
    except FileNotFoundError as missing:
        pytest.fail(str(missing))


@dataclass
class Stack:
    """One test's CRM: its own database, worker and API, on a shared Temporal server."""

    env: WorkflowEnvironment
    settings: Settings
    engine: Engine
    client: Client
    http: httpx.AsyncClient | None = None
    member: httpx.AsyncClient | None = None
    anon: httpx.AsyncClient | None = None
    app: Any = None
    deps: Deps | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session
            session.commit()


def stack_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        api_key=ADMIN_KEY,
        data_dir=tmp_path,
        database_url=test_database_url(tmp_path),
        temporal_task_queue=f"stageflow-{uuid.uuid4().hex[:12]}",
        rule_retry_initial_seconds=0.2,
        rule_max_attempts=3,
        public_url="http://testserver",
        allow_private_urls=True,
        # The suite's workflows run in the sandbox, so a non-deterministic call fails the test that reaches it;
        # the workers the fault and run-script tests start run as the service does, without it.
        workflow_sandbox=True,
    )
    values.update(overrides)
    return get_settings(**values)


def reserve_item_ids(engine: Engine, start: int) -> None:
    """Item ids of this test start at `start`, so workflow ids such as `deal-<id>` never repeat within a run
    on the shared Temporal server."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES ('item', ?)", (start,))
        else:
            connection.exec_driver_sql("SELECT setval(pg_get_serial_sequence('item', 'id'), %s)", (start,))


async def open_stack(
    exit_stack: AsyncExitStack, env: WorkflowEnvironment, settings: Settings, *, api: bool = True, worker: bool = True
) -> Stack:
    from activities.worker import build_worker

    engine = make_engine(settings.effective_database_url)
    exit_stack.callback(release_database, settings.effective_database_url)
    create_schema(engine)
    exit_stack.callback(engine.dispose)
    reserve_item_ids(engine, next(_id_blocks) * ID_BLOCK)
    with Session(engine) as session:
        session.add(ApiKey(name="member", key_hash=hashlib.sha256(MEMBER_KEY.encode()).hexdigest(), role="member"))
        session.commit()
    stack = Stack(env=env, settings=settings, engine=engine, client=env.client)
    stack.deps = Deps(settings=settings, database=engine, client=env.client)
    if worker:
        await exit_stack.enter_async_context(build_worker(env.client, stack.deps))
    if api:
        from api.main import create_app

        stack.app = create_app(settings, temporal_client=env.client)
        await exit_stack.enter_async_context(stack.app.router.lifespan_context(stack.app))
        transport = httpx.ASGITransport(app=stack.app)

        def client(key: str | None) -> httpx.AsyncClient:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers, timeout=60)

        stack.http = await exit_stack.enter_async_context(client(ADMIN_KEY))
        stack.member = await exit_stack.enter_async_context(client(MEMBER_KEY))
        stack.anon = await exit_stack.enter_async_context(client(None))
    return stack


