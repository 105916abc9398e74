"""Fixtures of the operations tests: a stageflow installation as separate processes, in the test's directory, whose
worker serves its metrics on a port of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.local import free_port
from tests.faults.cluster import Cluster


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Not started. The worker serves metrics on `cluster.env["STAGEFLOW_WORKER_METRICS_PORT"]`. On failure the tail
    of every log is printed."""
    installation = Cluster(tmp_path, STAGEFLOW_WORKER_METRICS_PORT=str(free_port()))
    try:
        yield installation
    finally:
        installation.close()
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(installation.log_tails())
