"""Fixtures of the operations tests: a stageflow installation as separate processes, in the test's directory, whose
worker serves its metrics on a port of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.local import free_port
from tests.faults.cluster import Cluster, cluster_of_test


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Not started. The worker serves metrics on `cluster.env["STAGEFLOW_WORKER_METRICS_PORT"]`. On failure the tail
    of every log is printed."""
    with cluster_of_test(request, tmp_path, STAGEFLOW_WORKER_METRICS_PORT=str(free_port())) as installation:
        yield installation
