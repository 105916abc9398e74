"""Payments taken on Stripe: a webhook event Stripe signed becomes the `payment_received` event of the deal or lead
its object's `metadata` names (`deal_id` or `lead_id`), as a payment reported through `POST /deals/{id}/payments`.

Stripe signs every delivery with the webhook endpoint's signing secret (`STAGEFLOW_STRIPE_WEBHOOK_SECRET`); the
official library checks the signature and its age. The Stripe event's id is the payment's event id, so an event
Stripe delivers again is one payment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import stripe
from fastapi import HTTPException, status
from pydantic import BaseModel
from sqlmodel import Session, select
from temporalio.client import Client

from activities.keys import event_key
from api.deps import MAX_ID
from api.errors import Loc, field_error
from api.usecases import items
from models.settings import Settings
from models.tables import Item, TimelineEntry

SIGNATURE_HEADER = "Stripe-Signature"
SECRET_SETTING = "STAGEFLOW_STRIPE_WEBHOOK_SECRET"
TOLERANCE_SECONDS = stripe.Webhook.DEFAULT_TOLERANCE
"""How old a signature may be (Stripe's default, 300 s): an older delivery replayed is refused."""

AMOUNT_FIELDS = {
    "payment_intent.succeeded": "amount_received",
    "checkout.session.completed": "amount_total",
    "invoice.paid": "amount_paid",
}
"""The events taken as payments, each with the field of its object that holds what was paid, in minor units."""

ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
})
"""Currencies whose Stripe amounts are whole units (5000 JPY is ¥5000)."""
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
"""Currencies whose Stripe amounts are thousandths (12345 KWD is 12.345 KWD)."""
MAX_AMOUNT = 1e15
"""The largest payment taken, as for `POST /deals/{id}/payments`."""

EVENT_ID = re.compile(r"^[\x21-\x7e]{1,200}$")
CURRENCY = re.compile(r"^[A-Za-z]{3}$")
DIGITS = re.compile(r"^[0-9]{1,12}$")
OBJECT: Loc = ("body", "data", "object")
METADATA: Loc = (*OBJECT, "metadata")
Entity = Literal["deal", "lead"]


class StripeReceipt(BaseModel):
    """What became of a Stripe event: `accepted` (sent to the item as its payment), `duplicate` (it reached the item
    before, so nothing changed) or `ignored` (`reason` says why it is not a payment taken here)."""

    status: Literal["accepted", "duplicate", "ignored"]
    event_id: str
    type: str
    reason: str | None = None
    deal_id: int | None = None
    lead_id: int | None = None
    amount: float | None = None
    currency: str | None = None


@dataclass(frozen=True)
class Payment:
    """A payment read from a Stripe event: which item, how much in the currency's main unit, in which currency."""

    entity: Entity
    item_id: int
    amount: float
    currency: str
    key: str = ""
    """The payment's own id as the item's event id (`payment_id`): the same payment twice is one payment."""


def currency_exponent(currency: str) -> int:
    """How many decimals a Stripe amount in `currency` holds: none for the zero-decimal currencies, three for BHD,
    JOD, KWD, OMR and TND, two for every other."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def from_minor_units(amount: int, currency: str) -> float:
    """A Stripe amount (a whole number of the currency's minor unit) in the currency's main unit: 147600 EUR is
    1476.0, 5000 JPY is 5000.0, 12345 KWD is 12.345."""
    return float(Decimal(amount).scaleb(-currency_exponent(currency)))


def webhook_secret(settings: Settings) -> str:
    """The endpoint's signing secret; a 404 naming the setting while it is not set."""
    secret = settings.stripe_webhook_secret.get_secret_value() if settings.stripe_webhook_secret else ""
    if not secret.strip():
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail=f"Stripe payments are not set up on this server: set {SECRET_SETTING} to the signing secret "
            "(whsec_…) of the Stripe webhook endpoint that posts here",
        )
    return secret


def _signature_refused(why: str) -> HTTPException:
    return field_error(("header", SIGNATURE_HEADER), f"{SIGNATURE_HEADER} {why}", status.HTTP_400_BAD_REQUEST)


def _not_an_event(why: str) -> HTTPException:
    return field_error(("body",), f"is not a Stripe event: {why}", status.HTTP_400_BAD_REQUEST)


def verified_event(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event in `payload`, once its `Stripe-Signature` shows that Stripe made it with `secret` less than
    TOLERANCE_SECONDS ago. A missing, malformed, wrong or stale signature is a 400 naming the header; a signed
    body that is not a JSON event a 400 naming the body (the library reads the body only once the signature
    verified, so anything else it raises is about the body)."""
    if not signature:
        raise _signature_refused("is missing: Stripe sends it with every event it posts")
    if not signature.isascii():
        raise _signature_refused("is not of Stripe's form t=<time>,v1=<signature>")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_an_event("the body is not UTF-8 text") from None
    try:
        event = stripe.Webhook.construct_event(text, signature, secret, tolerance=TOLERANCE_SECONDS)
        values = event.to_dict()
    except stripe.SignatureVerificationError as error:
        raise _signature_refused(
            f"does not verify ({error.user_message}): it must be Stripe's signature of this very body, made less "
            f"than {TOLERANCE_SECONDS} s ago with the endpoint's signing secret ({SECRET_SETTING})"
        ) from None
    except Exception as error:  # noqa: BLE001 - the signature verified first: anything else is about the body
        raise _not_an_event(f"{type(error).__name__}: {str(error)[:200]}") from None
    if not isinstance(values, dict):
        raise _not_an_event("it is not a JSON object")
    return values


def _text(values: dict[str, Any], field: str, pattern: re.Pattern[str], wanted: str) -> str:
    value = values.get(field)
    if not isinstance(value, str) or not pattern.match(value):
        raise field_error(("body", field), f"must be {wanted}")
    return value


def _amount(source: dict[str, Any], field: str) -> int:
    value = source.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise field_error((*OBJECT, field), "must be a whole number of the currency's minor unit, 0 or more")
    return value


def _currency(source: dict[str, Any]) -> str:
    value = source.get("currency")
    if not isinstance(value, str) or not CURRENCY.match(value):
        raise field_error((*OBJECT, "currency"), "must be a three-letter currency code")
    return value.upper()


class NamesNoItem(Exception):
    """A payment whose metadata names no deal or lead: one of the account's other payments, not for this service."""


def payment_id(kind: str, source: dict[str, Any], event_id: str) -> str:
    """What identifies the payment itself, whichever event reports it: the PaymentIntent's id (a Checkout Session's
    and an Invoice's `payment_intent`), else the event's own id. A payment reported by two events is one payment."""
    intent = source.get("id") if kind == "payment_intent.succeeded" else source.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    return f"stripe-{intent}" if isinstance(intent, str) and EVENT_ID.match(intent) else f"stripe-{event_id}"


def _item_named(source: dict[str, Any]) -> tuple[Entity, int]:
    """The deal or lead the object's metadata names: (entity, id); a 422 naming the field when it names none,
    both, or an id that is not a whole number in range."""
    metadata = source.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    named = [field for field in ("deal_id", "lead_id") if metadata.get(field) not in (None, "")]
    if not named:
        raise NamesNoItem("the metadata names no item (deal_id or lead_id): a payment of something else")
    if len(named) > 1:
        raise field_error(METADATA, "names both deal_id and lead_id: give one")
    field = named[0]
    entity: Entity = "deal" if field == "deal_id" else "lead"
    raw = metadata[field]
    text = raw.strip() if isinstance(raw, str) else ""
    if not DIGITS.match(text) or not 1 <= int(text) <= MAX_ID:
        raise field_error((*METADATA, field), f"must be the id of a {entity}, a whole number from 1 to {MAX_ID} "
                                              f"(it is {repr(raw)[:50]})")
    return entity, int(text)


def read_payment(kind: str, event: dict[str, Any]) -> Payment | str:
    """The payment a verified event of type `kind` reports, or why it is not one taken here (a type not used, a
    checkout not paid, nothing paid). An event of a type used whose fields are not Stripe's is a 422 naming the
    field."""
    field = AMOUNT_FIELDS.get(kind)
    if field is None:
        return f"events of type {kind} are not payments; this endpoint takes {', '.join(AMOUNT_FIELDS)}"
    data = event.get("data")
    source = data.get("object") if isinstance(data, dict) else None
    if not isinstance(source, dict):
        raise field_error(OBJECT, f"must be the {kind.rsplit('.', 1)[0]} object the event is about")
    if kind == "checkout.session.completed" and source.get("payment_status") != "paid":
        return (f"the checkout session's payment_status is {repr(source.get('payment_status'))[:50]}, not 'paid': "
                "nothing has been paid yet")
    minor = _amount(source, field)
    if minor == 0:
        return f"{field} is 0: nothing was paid"
    currency = _currency(source)
    amount = from_minor_units(minor, currency)
    if amount > MAX_AMOUNT:
        raise field_error((*OBJECT, field), f"is more than {MAX_AMOUNT:.0f} {currency}, the largest payment taken")
    try:
        entity, item_id = _item_named(source)
    except NamesNoItem as ignored:
        return str(ignored)
    return Payment(entity=entity, item_id=item_id, amount=amount, currency=currency,
                   key=payment_id(kind, source, str(event.get("id"))))


def paid_item(session: Session, payment: Payment) -> Item:
    """The deal or lead a payment names; a 422 naming the metadata field when there is no such item."""
    field = f"{payment.entity}_id"
    item = session.get(Item, payment.item_id)
    if item is None:
        raise field_error((*METADATA, field), f"{payment.entity} {payment.item_id} does not exist")
    if item.entity_type != payment.entity:
        raise field_error((*METADATA, field), f"{payment.entity} {payment.item_id} does not exist: "
                                              f"{payment.item_id} is a {item.entity_type}, named as "
                                              f"{item.entity_type}_id")
    return item


def _reached_before(session: Session, item: Item, event_id: str) -> bool:
    key = event_key(item.entity_type, item.id, event_id)
    return session.exec(select(TimelineEntry.id).where(TimelineEntry.key == key)).first() is not None


async def take_event(
    session: Session, client: Client, settings: Settings, payload: bytes, signature: str | None,
) -> StripeReceipt:
    """A Stripe webhook delivery: verified, read, and sent to the item it names as its payment (the PaymentIntent's
    id as the event id, so a redelivery, or the same payment reported by a Checkout Session and its PaymentIntent,
    is one payment). 404 while no signing secret is set, 400 for a signature that does not verify or a body that is
    not an event, 200 ignored for a payment whose metadata names no item (the account's other payments), 422 naming
    the field for an item that does not exist, 409 for an item that has not entered a stage or is archived; nothing
    changes then."""
    event = verified_event(payload, signature, webhook_secret(settings))
    kind = _text(event, "type", EVENT_ID, "the event's type, such as payment_intent.succeeded")
    event_id = _text(event, "id", EVENT_ID, "the event's id (evt_…)")
    read = read_payment(kind, event)
    if isinstance(read, str):
        return StripeReceipt(status="ignored", event_id=event_id, type=kind, reason=read)
    item = paid_item(session, read)
    receipt = StripeReceipt(status="accepted", event_id=event_id, type=kind, amount=read.amount,
                            currency=read.currency, **{f"{read.entity}_id": read.item_id})
    if _reached_before(session, item, read.key):
        return receipt.model_copy(update={
            "status": "duplicate", "reason": f"payment {read.key.removeprefix('stripe-')} reached {read.entity} "
                                             f"{read.item_id} before"})
    await items.report_payment(client, settings, item, read.amount, read.currency, event_id=read.key)
    return receipt
