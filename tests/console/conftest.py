"""A real browser for the console: Debian's Chromium (installed with apt-get when missing), driven by Playwright, on
the console served over HTTP by uvicorn, next to a Temporal dev server whose UI the console links to. A browser
that cannot be had fails the tests; it never skips them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import uvicorn
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from scripts.local import free_port, pinned_dev_server_args
from tests.debian import NotInstallable, install
from tests.stacks import Stack, binary, open_stack, stack_settings
from workflows.converter import DATA_CONVERTER
from workflows.types import SEARCH_ATTRIBUTES

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def chromium() -> str:
    """Debian's chromium, installed when missing (as root, with apt-get); the reason it cannot be had fails the test."""
    try:
        install("chromium", CHROMIUM.exists, recommends=True)
    except NotInstallable as reason:
        pytest.fail(str(reason))
    return str(CHROMIUM)


@pytest.fixture(scope="session")
async def browser():
    from playwright.async_api import async_playwright

    path = chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
async def ui_env() -> AsyncIterator[tuple[WorkflowEnvironment, int]]:
    """A Temporal dev server with its web UI, for the console's links to workflows."""
    port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"), dev_server_log_level="error", ui=True, ui_port=port,
        port=free_port(), dev_server_extra_args=pinned_dev_server_args(),
        search_attributes=[SearchAttributeKey.for_keyword(name) for name in SEARCH_ATTRIBUTES],
        data_converter=DATA_CONVERTER,
    )
    try:
        yield env, port
    finally:
        await env.shutdown()


@pytest.fixture
async def console(ui_env, tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack whose API (and console) answers on a real port: `stack.extras["url"]`."""
    env, ui_port = ui_env
    port = free_port()
    async with AsyncExitStack() as exit_stack:
        stack = await open_stack(exit_stack, env, stack_settings(
            tmp_path, public_url=f"http://127.0.0.1:{port}", temporal_ui_url=f"http://127.0.0.1:{ui_port}",
        ))
        server = uvicorn.Server(uvicorn.Config(stack.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.05)
        stack.extras["url"] = f"http://127.0.0.1:{port}"
        try:
            yield stack
        finally:
            server.should_exit = True
            await serving


@pytest.fixture
async def page(browser):
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    tab = await context.new_page()
    tab.set_default_timeout(20_000)
    try:
        yield tab
    finally:
        await context.close()
