"""One-time callback URLs: an outside system answers a rule that waits for it (no key; the token is the secret)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, status

from api.deps import ClientDep, SessionDep
from api.schemas import Accepted
from api.usecases import items

router = APIRouter(prefix="/callbacks", tags=["callbacks"])


@router.post("/{token}", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
async def answer_callback(
    token: Annotated[str, Path(min_length=20, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")],
    values: Annotated[dict[str, Any], Body(description="return values for the waiting rule")],
    session: SessionDep,
    client: ClientDep,
):
    """The answer's values become the waiting rule's results; a callback is answered once."""
    await items.answer_callback(session, client, token, values)
    return Accepted()
