"""Request body size limit: a 413 with a JSON detail before a large body is read, or as soon as it grows too big."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import HTTPException, status
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large(limit: int) -> str:
    return f"Request body is larger than {limit} bytes"


class BodyLimitMiddleware:
    """Refuses request bodies above `default` bytes; `larger` raises the limit for exact paths (uploads)."""

    def __init__(self, app: ASGIApp, default: int, larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.default)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = JSONResponse({"detail": too_large(limit)}, status_code=status.HTTP_413_CONTENT_TOO_LARGE)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(status_code=status.HTTP_413_CONTENT_TOO_LARGE, detail=too_large(limit))
            return message

        await self.app(scope, limited_receive, send)
