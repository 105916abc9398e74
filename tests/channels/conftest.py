"""A stack whose messenger channels and call provider are the local stand-ins of `providers.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.channels.providers import Providers, provider_settings, providers
from tests.stacks import Stack, open_stack, stack_settings


@pytest.fixture
def fake() -> Iterator[Providers]:
    with providers() as running:
        yield running


@pytest.fixture
async def channel_stack(dev_env: WorkflowEnvironment, tmp_path: Path, fake: Providers) -> AsyncIterator[Stack]:
    settings = stack_settings(tmp_path, sms_default_region="PL",
                              **{name.lower(): value for name, value in provider_settings(fake.url).items()})
    async with AsyncExitStack() as exit_stack:
        yield await open_stack(exit_stack, dev_env, settings)
