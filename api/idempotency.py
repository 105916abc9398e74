"""`Idempotency-Key` on moves and creations: a retry gets the first answer and changes nothing again."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from models.tables import IdempotentRequest

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="A client-chosen key: a retry with the same key returns the first answer",
    ),
]


class Idempotency:
    """The record of one client key on one route (`route` names the resource, e.g. `deal-7/move`)."""

    def __init__(self, session: Session, route: str, key: str | None) -> None:
        self.session = session
        self.route = route
        self.key = f"{route} {key}" if key else None

    def recall(self) -> IdempotentRequest | None:
        if self.key is None:
            return None
        return self.session.get(IdempotentRequest, self.key)

    def remember(self, status_code: int, response: dict[str, Any], *, commit: bool = True) -> None:
        """Record the answer; when a concurrent retry recorded one first, that one stands."""
        if self.key is None:
            return
        self.session.add(IdempotentRequest(key=self.key, route=self.route, status_code=status_code, response=response))
        if not commit:
            return
        try:
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
