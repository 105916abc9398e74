"""`Idempotency-Key` on creations, moves and events: a retry changes nothing again (a creation or a move gets the
first answer; an event is sent again and its item's workflow takes it once); the same key with another request is
refused (422 naming the header), since what it asks would otherwise be dropped."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import Header, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from api.errors import field_error
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

REUSED = ("this key was sent before with another request: send that request again to retry it, or use a new key for "
          "a new request")


def fingerprint(request: Any) -> str:
    """A digest of a request's content, the same for the same content whatever the order of its keys."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


class Idempotency:
    """The record of one client key on one route (`route` names the resource, e.g. `deal-7/move`) for one request
    (`request`: what the client asked, compared on a retry)."""

    def __init__(self, session: Session, route: str, key: str | None, request: Any = None) -> None:
        self.session = session
        self.route = route
        self.key = f"{route} {key}" if key else None
        self.fingerprint = fingerprint(request) if request is not None else None

    def recall(self) -> IdempotentRequest | None:
        """The answer recorded for this key, if any; a key recorded with another request is refused."""
        if self.key is None:
            return None
        earlier = self.session.get(IdempotentRequest, self.key)
        if earlier is not None:
            self._same_request(earlier)
        return earlier

    def claim(self) -> None:
        """An event's key: recorded with its request the first time, refused when it came with another one before
        (the item's workflow takes an event id once, so the other request would be dropped)."""
        if self.key is None or self.recall() is not None:
            return
        self.remember(status.HTTP_202_ACCEPTED, {})
        self._same_request(self.session.get(IdempotentRequest, self.key))

    def _same_request(self, earlier: IdempotentRequest) -> None:
        if earlier.fingerprint and self.fingerprint and earlier.fingerprint != self.fingerprint:
            raise field_error(("header", "Idempotency-Key"), REUSED)

    def remember(self, status_code: int, response: dict[str, Any], *, commit: bool = True) -> None:
        """Record the answer; when a concurrent retry recorded one first, that one stands."""
        if self.key is None:
            return
        self.session.add(IdempotentRequest(key=self.key, route=self.route, status_code=status_code, response=response,
                                           fingerprint=self.fingerprint))
        if not commit:
            return
        try:
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
