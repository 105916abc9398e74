"""Texts no database can store: a JSON body whose strings hold an unpaired UTF-16 surrogate (`"\\ud874"`, which
JSON allows as an escape but UTF-8 cannot encode) is a 422 naming where it is, before any route reads it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from fastapi import HTTPException, status
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
MESSAGE = "holds an unpaired UTF-16 surrogate (a \\ud800-\\udfff escape on its own), which is not text"


def _lone_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def unstorable(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The places in a parsed JSON value whose key or string is not text."""
    if isinstance(value, str):
        if _lone_surrogate(value):
            yield loc
    elif isinstance(value, dict):
        for key, inner in value.items():
            if _lone_surrogate(key):
                yield (*loc, key.encode("utf-8", "backslashreplace").decode())
            yield from unstorable(inner, (*loc, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from unstorable(inner, (*loc, index))


def _printable(loc: tuple[str | int, ...]) -> list[str | int]:
    return [part.encode("utf-8", "backslashreplace").decode() if isinstance(part, str) else part for part in loc]


class TextOnlyMiddleware:
    """Reads a JSON request body whose bytes hold a surrogate escape and refuses it with a 422 if one is unpaired;
    every other request passes untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "json" not in (Headers(scope=scope).get("content-type") or ""):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        try:
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
        except HTTPException as refused:  # the body limit, read here before any route
            response = JSONResponse({"detail": refused.detail}, status_code=refused.status_code)
            await response(scope, receive, send)
            return
        if _SURROGATE_ESCAPE.search(body):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            places = list(unstorable(parsed, ("body",)))
            if places:
                detail = [{"type": "value_error", "loc": _printable(loc), "msg": MESSAGE} for loc in places]
                response = JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
                await response(scope, receive, send)
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
