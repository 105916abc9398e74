"""Inbound webhook triggers: POST /hooks/{secret}, one secret URL per trigger (no key)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from sqlmodel import select

from api.deps import ClientDep, SessionDep, SettingsDep, hash_key
from api.errors import field_error
from api.idempotency import IdempotencyKey
from api.schemas import Accepted, HookCall
from api.usecases import items
from models.domain.events import WebhookCalled
from models.tables import HookSecret, Pipeline

router = APIRouter(prefix="/hooks", tags=["inbound webhooks"])
UNKNOWN = "Unknown webhook"


@router.post("/{secret}", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
async def inbound_webhook(
    secret: Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")],
    body: HookCall,
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
):
    """A `webhook` event for the item, carrying the trigger's pipeline, stage and name with the data."""
    hook = session.exec(select(HookSecret).where(HookSecret.secret_hash == hash_key(secret))).first()
    if hook is None or not hmac.compare_digest(hook.secret.encode(), secret.encode()):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=UNKNOWN)
    field, entity, item_id = (
        ("deal_id", "deal", body.deal_id) if body.deal_id is not None else ("lead_id", "lead", body.lead_id)
    )
    try:
        item = items.get_item(session, entity, item_id)
    except HTTPException:
        raise field_error(("body", field), f"{entity} {item_id} does not exist") from None
    pipeline = session.get(Pipeline, hook.pipeline_id)
    if item.pipeline_id != hook.pipeline_id:
        name = pipeline.name if pipeline else hook.pipeline_id
        raise field_error(("body", field), f"{entity} {item_id} is not in pipeline {name!s} of this webhook")
    if item.stage is None:
        raise field_error(("body", field), f"{entity} {item_id} has not entered a stage yet", status.HTTP_409_CONFLICT)
    call = WebhookCalled(pipeline_id=hook.pipeline_id, stage=hook.stage, trigger=hook.trigger_name, values=body.data)
    items.claim_event_key(session, item, idempotency_key, {"webhook": [hook.pipeline_id, hook.stage, hook.trigger_name],
                                                           "call": body.model_dump(mode="json")})
    await items.tell(client, settings, item, call, event_id=idempotency_key)
    return Accepted()
