"""Fixtures of the fault suite: a stageflow installation as separate processes, in the test's directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.cluster import Cluster


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Not started: the test starts (and kills) its parts. On failure the tail of every log is printed."""
    installation = Cluster(tmp_path)
    try:
        yield installation
    finally:
        installation.close()
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(installation.log_tails())
