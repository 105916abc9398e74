"""Payments taken on Stripe: POST /payments/stripe, the URL of a Stripe webhook endpoint. No API key (Stripe cannot
send one): the `Stripe-Signature` Stripe makes of each event with the endpoint's signing secret is its proof."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, status
from fastapi.responses import JSONResponse

from api.deps import ClientDep, SessionDep, SettingsDep
from api.usecases import stripe as stripe_payments
from api.usecases.stripe import SIGNATURE_HEADER, StripeReceipt

router = APIRouter(prefix="/payments", tags=["payments"])

EVENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A Stripe event, as Stripe posts it (read as bytes: the signature is of the body as sent)",
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["id", "type", "data"],
            "properties": {
                "id": {"type": "string", "example": "evt_1PqX"},
                "type": {"type": "string", "example": "payment_intent.succeeded"},
                "data": {"type": "object", "properties": {"object": {
                    "type": "object",
                    "description": "The PaymentIntent, Checkout Session or Invoice; its `metadata` names the item",
                    "properties": {"metadata": {"type": "object", "example": {"deal_id": "42"}}},
                }}},
            },
        }}},
    },
}
ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": StripeReceipt, "description": "An event that is not a payment taken here (`ignored`, with the "
          "reason) or that reached the item before (`duplicate`): nothing changed"},
    400: {"description": "The Stripe-Signature header is missing or does not verify, or the body is not an event"},
    404: {"description": "STAGEFLOW_STRIPE_WEBHOOK_SECRET is not set"},
    409: {"description": "The item has not entered a stage yet, or is archived"},
    422: {"description": "The event names no item, or one that does not exist (the field is named)"},
}


@router.post(
    "/stripe", response_model=StripeReceipt, status_code=status.HTTP_202_ACCEPTED, responses=ANSWERS,
    response_description="The payment was sent to the item (`accepted`)",
    openapi_extra=EVENT_BODY,
)
async def stripe_event(
    request: Request,
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
    signature: Annotated[
        str | None, Header(alias=SIGNATURE_HEADER, description="Stripe's t=…,v1=… signature of the body")
    ] = None,
):
    """A Stripe webhook event: `payment_intent.succeeded`, `checkout.session.completed` (when paid) and
    `invoice.paid` whose object's metadata holds `deal_id` or `lead_id` become that item's `payment_received`
    (202); other events are answered 200 and ignored."""
    receipt = await stripe_payments.take_event(session, client, settings, await request.body(), signature)
    code = status.HTTP_202_ACCEPTED if receipt.status == "accepted" else status.HTTP_200_OK
    return JSONResponse(receipt.model_dump(mode="json", exclude_none=True), status_code=code)
