"""Signing in to the console over HTTP (the browser tests sign in through the page)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.stacks import Stack

CSRF_RE = re.compile(r'name="csrf-token" content="([0-9a-f]+)"')


@asynccontextmanager
async def signed_in(stack: Stack, key: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client holding a console session for `key`, and the session's CSRF token."""
    async with httpx.AsyncClient(transport=stack.http._transport, base_url="http://testserver") as client:
        login = await client.get("/ui/login")
        token = re.search(r'name="login_token" value="([0-9a-f]+)"', login.text).group(1)
        answer = await client.post("/ui/login", data={"api_key": key, "login_token": token})
        assert answer.status_code == 303, answer.text
        page = await client.get("/ui/pipelines")
        yield client, CSRF_RE.search(page.text).group(1)
