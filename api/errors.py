"""Errors in FastAPI's shape: `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}` naming the field at fault."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import HTTPException, status

Loc = Sequence[str | int]


def field_problem(loc: Loc, msg: str, kind: str = "value_error") -> dict:
    return {"type": kind, "loc": list(loc), "msg": msg}


def field_error(loc: Loc, msg: str, status_code: int = status.HTTP_422_UNPROCESSABLE_CONTENT) -> HTTPException:
    return HTTPException(status_code=status_code, detail=[field_problem(loc, msg)])


def not_found(what: str, ident: object) -> HTTPException:
    return HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"{what} {ident} not found")


class Problems:
    """Collects every field error of a request, so the client sees them all at once."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, loc: Loc, msg: str, kind: str = "value_error") -> None:
        self.items.append(field_problem(loc, msg, kind))

    def raise_if_any(self, status_code: int = status.HTTP_422_UNPROCESSABLE_CONTENT) -> None:
        if self.items:
            raise HTTPException(status_code=status_code, detail=self.items)
