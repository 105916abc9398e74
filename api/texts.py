"""Texts no database can store are refused before any route reads them, with a 422 naming where they are: a JSON
string (or key) holding an unpaired UTF-16 surrogate (`"\\ud874"`, which JSON allows as an escape but UTF-8 cannot
encode) or a NUL character (`"\\u0000"`, which PostgreSQL cannot store), and a NUL in the query string or path."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

from fastapi import HTTPException, status
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SUSPECT_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")
MESSAGE = (
    "holds an unpaired UTF-16 surrogate (a \\ud800-\\udfff escape on its own) or a NUL character, which is not "
    "text that can be stored"
)
NUL_MESSAGE = "holds a NUL character (%00), which is not text that can be stored"


def _not_storable(text: str) -> bool:
    return "\x00" in text or any("\ud800" <= char <= "\udfff" for char in text)


def unstorable(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The places in a parsed JSON value whose key or string is not text."""
    if isinstance(value, str):
        if _not_storable(value):
            yield loc
    elif isinstance(value, dict):
        for key, inner in value.items():
            if _not_storable(key):
                yield (*loc, key)
            yield from unstorable(inner, (*loc, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from unstorable(inner, (*loc, index))


def _printable(loc: tuple[str | int, ...]) -> list[str | int]:
    return [part.encode("utf-8", "backslashreplace").decode() if isinstance(part, str) else part for part in loc]


def _nul_in_address(scope: Scope) -> list[str] | None:
    """Where a NUL is in the request's path or query string (`["query", name]`, `["path"]`), or None."""
    query = scope.get("query_string") or b""
    if b"%00" in query or b"\x00" in query:
        for part in query.split(b"&"):
            name, _, value = part.partition(b"=")
            if b"%00" in value or b"\x00" in value or b"%00" in name:
                return ["query", unquote_plus(name.decode("latin-1"))]
    raw_path = scope.get("raw_path") or scope.get("path", "").encode()
    if b"%00" in raw_path or "\x00" in scope.get("path", ""):
        return ["path"]
    return None


class TextOnlyMiddleware:
    """Reads a JSON request body whose bytes hold a surrogate escape and refuses it with a 422 if one is unpaired;
    every other request passes untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nul = _nul_in_address(scope)
        if nul is not None:
            detail = [{"type": "value_error", "loc": nul, "msg": NUL_MESSAGE}]
            await JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)(scope, receive, send)
            return
        if "json" not in (Headers(scope=scope).get("content-type") or ""):
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
        if _SUSPECT_ESCAPE.search(body):
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
