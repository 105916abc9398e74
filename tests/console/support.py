"""Signing in to the console over HTTP (the browser tests sign in through the page)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
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


class _FormReader(HTMLParser):
    """The fields of the first form that has a `name` field, as the browser would post them."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._form = 0
        self._done = False
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag == "form" and not self._done:
            self._form += 1
        if not self._form or self._done:
            return
        name = attributes.get("name")
        if tag == "input" and name and attributes.get("type") not in ("checkbox", "radio", "submit"):
            self.values[name] = attributes.get("value", "")
        elif tag == "input" and name and "checked" in attributes:
            self.values[name] = attributes.get("value", "on")
        elif tag == "textarea" and name:
            self._textarea, self.values[name] = name, ""
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and ("selected" in attributes or self._select not in self.values):
            self.values[self._select] = attributes.get("value", "")

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None
        elif tag == "form" and self._form:
            self._form -= 1
            self._done = "name" in self.values


def form_values(page: str) -> dict[str, str]:
    """What posting the page's rule (or other) form unchanged sends."""
    reader = _FormReader()
    reader.feed(page)
    return reader.values
