"""Fixtures for the custom rules: an outside endpoint on loopback, and a stack that refuses private URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.custom.endpoint import Endpoint, endpoint


@pytest.fixture
async def outside() -> AsyncIterator[Endpoint]:
    async with endpoint() as server:
        yield server


@pytest.fixture
def guarded_stack(stack):
    """The test's stack with the production default STAGEFLOW_ALLOW_PRIVATE_URLS=false: its worker reads
    the setting when a rule calls out, so loopback and private addresses are refused."""
    stack.settings.allow_private_urls = False
    assert stack.deps.settings.allow_private_urls is False
    return stack
