"""One-time callback URLs: an outside system answers a rule that waits for it (no key; the token is the secret)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, status
from sqlmodel import select
from temporalio.service import RPCError

from api.deps import ClientDep, SessionDep
from api.schemas import Accepted
from models.tables import Callback, utcnow
from workflows.types import CallbackSignal

router = APIRouter(prefix="/callbacks", tags=["callbacks"])
UNKNOWN = "Unknown or used callback"


@router.post("/{token}", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
async def answer_callback(
    token: Annotated[str, Path(min_length=20, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")],
    values: Annotated[dict[str, Any], Body(description="return values for the waiting rule")],
    session: SessionDep,
    client: ClientDep,
):
    """The answer's values become the waiting rule's results; a callback is answered once."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    callback = session.exec(select(Callback).where(Callback.token_hash == digest)).first()
    if callback is None or not hmac.compare_digest(callback.token_hash, digest) or callback.answered_at:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=UNKNOWN)
    if callback.expires_at is not None and callback.expires_at.replace(tzinfo=None) < utcnow().replace(tzinfo=None):
        raise HTTPException(status_code=status.HTTP_410_GONE, detail="The callback has expired")
    try:
        await client.get_workflow_handle(callback.workflow_id).signal(
            "callback", CallbackSignal(rule=callback.rule_name, values=values)
        )
    except RPCError as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail="The rule no longer waits") from error
    callback.answered_at, callback.values = utcnow(), values
    session.add(callback)
    session.commit()
    return Accepted()
