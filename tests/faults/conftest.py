"""Fixtures of the fault suite: a stageflow installation as separate processes, in the test's directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.cluster import Cluster, cluster_of_test


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Not started: the test starts (and kills) its parts. On failure the tail of every log is printed."""
    with cluster_of_test(request, tmp_path) as installation:
        yield installation
