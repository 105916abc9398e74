"""Payments taken on Stripe: signed webhook events at POST /payments/stripe become the item's `payment_received`,
as POST /deals/{id}/payments does: the deal moves through its payment trigger and adds the payment to `paid`.

Events are signed here as Stripe signs them (HMAC-SHA256 of `<timestamp>.<body>` with the endpoint's secret, sent
as `Stripe-Signature: t=<timestamp>,v1=<hex>`), checked once against the stripe library's own signer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import event as reached
from hypothesis import strategies as st
from temporalio.testing import WorkflowEnvironment

from api.usecases.stripe import from_minor_units
from tests.api.support import assert_problem
from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user
from tests.stacks import Stack, open_stack, stack_settings

SECRET = "whsec_" + "stageflow0test0signing0secret0"
PATH = "/payments/stripe"
HEADER = "Stripe-Signature"
METADATA = ["body", "data", "object", "metadata"]


@pytest.fixture
async def stripe_stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack whose API takes Stripe events signed with SECRET."""
    async with AsyncExitStack() as exit_stack:
        yield await open_stack(exit_stack, dev_env, stack_settings(tmp_path, stripe_webhook_secret=SECRET))


def signature(body: str, *, secret: str = SECRET, at: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe sends with `body`, signed at `at` (now by default)."""
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def delivery(event: Any, **signing: Any) -> dict[str, Any]:
    """The request Stripe makes to deliver `event` (a dict, or the body as text)."""
    body = event if isinstance(event, str) else json.dumps(event)
    return {"content": body, "headers": {"Content-Type": "application/json; charset=utf-8",
                                         HEADER: signature(body, **signing)}}


def event_of(kind: str, source: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "api_version": "2024-06-20",
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1, "type": kind,
            "data": {"object": source}}


def payment_intent(amount: int, currency: str, **metadata: str) -> dict[str, Any]:
    return {"id": f"pi_{uuid.uuid4().hex[:24]}", "object": "payment_intent", "amount": amount,
            "amount_received": amount, "currency": currency, "status": "succeeded", "metadata": metadata}


def checkout_session(amount: int, currency: str, payment_status: str = "paid", **metadata: str) -> dict[str, Any]:
    return {"id": f"cs_test_{uuid.uuid4().hex[:24]}", "object": "checkout.session", "mode": "payment",
            "amount_subtotal": amount, "amount_total": amount, "currency": currency, "status": "complete",
            "payment_status": payment_status, "metadata": metadata}


def invoice(amount: int, currency: str, **metadata: str) -> dict[str, Any]:
    return {"id": f"in_{uuid.uuid4().hex[:24]}", "object": "invoice", "amount_due": amount, "amount_paid": amount,
            "currency": currency, "status": "paid", "metadata": metadata}


async def paid_pipeline(stack: Stack, *, entity: str = "deal") -> tuple[dict, dict]:
    """A pipeline NEW → PAID whose PAID stage waits for a payment; and its manager."""
    manager = await user(stack.http, f"Manager {uuid.uuid4().hex[:6]}")
    flow = await pipeline(stack.http, ["NEW", "PAID"], entity=entity, name=f"{entity.title()}s")
    await automate(stack.http, flow["id"], {"PAID": {"triggers": [{"name": "paid", "type": "payment_received"}]}})
    return flow, manager


async def state(stack: Stack, item: dict, entity: str = "deal") -> tuple[str, float, list[dict]]:
    """The item's stage, what it has been paid, and its timeline."""
    seen = ok(await stack.http.get(f"/{entity}s/{item['id']}"))
    return seen["stage"], seen["paid"], await timeline(stack.http, item["id"], entity=entity)


async def moved_to(stack: Stack, item: dict, stage: str, entity: str = "deal") -> bool:
    return ok(await stack.http.get(f"/{entity}s/{item['id']}"))["stage"] == stage


def test_the_signature_made_here_is_the_one_the_stripe_library_makes():
    body = json.dumps(event_of("payment_intent.succeeded", payment_intent(100, "eur", deal_id="1")))
    assert signature(body, at=1_700_000_000) == stripe.WebhookSignature.generate_signature_header(
        body, SECRET, timestamp=1_700_000_000)


@pytest.mark.parametrize(("amount", "currency", "major"), [
    (147600, "eur", 1476.0), (199, "USD", 1.99), (500, "isk", 5.0), (5000, "jpy", 5000.0), (5000, "KRW", 5000.0),
    (120000, "vnd", 120000.0), (12345, "kwd", 12.345), (1000, "BHD", 1.0), (1, "tnd", 0.001),
])
def test_amounts_are_read_from_minor_units_by_the_currency_exponent(amount, currency, major):
    assert from_minor_units(amount, currency) == major


async def test_signed_payment_events_move_the_item_and_add_to_what_it_has_been_paid(stripe_stack):
    stack = stripe_stack
    flow, manager = await paid_pipeline(stack)
    euro = await deal(stack.http, flow["id"], manager["id"], title="Sofa", amount=1476, currency="EUR")
    event = event_of("payment_intent.succeeded", payment_intent(147600, "eur", deal_id=str(euro["id"])))
    answer = ok(await stack.anon.post(PATH, **delivery(event)), HTTPStatus.ACCEPTED)
    assert answer == {"status": "accepted", "event_id": event["id"], "type": "payment_intent.succeeded",
                      "deal_id": euro["id"], "amount": 1476.0, "currency": "EUR"}
    await eventually(lambda: moved_to(stack, euro, "PAID"))
    stage, paid, entries = await state(stack, euro)
    assert (stage, paid) == ("PAID", 1476)
    [received] = [entry for entry in entries if entry["kind"] == "event_received"]
    assert {key: received["data"][key] for key in ("type", "event_id", "matched")} == {
        "type": "payment_received", "event_id": f"stripe-{event['data']['object']['id']}", "matched": "paid"}
    [moved] = [entry for entry in entries if entry["kind"] == "stage_changed" and entry["data"]["to"] == "PAID"]
    assert moved["data"]["trigger"] == "paid"

    yen = await deal(stack.http, flow["id"], manager["id"], title="Tea set", amount=5000, currency="JPY")
    event = event_of("checkout.session.completed", checkout_session(5000, "jpy", deal_id=str(yen["id"])))
    answer = ok(await stack.anon.post(PATH, **delivery(event)), HTTPStatus.ACCEPTED)
    assert (answer["amount"], answer["currency"]) == (5000, "JPY")
    await eventually(lambda: moved_to(stack, yen, "PAID"))
    assert (await state(stack, yen))[:2] == ("PAID", 5000)

    leads, _ = await paid_pipeline(stack, entity="lead")
    lead = await deal(stack.http, leads["id"], manager["id"], entity="lead", title="Office chairs", currency="KWD")
    event = event_of("invoice.paid", invoice(12340, "kwd", lead_id=str(lead["id"])))
    answer = ok(await stack.anon.post(PATH, **delivery(event)), HTTPStatus.ACCEPTED)
    assert (answer["lead_id"], answer["amount"], answer["currency"]) == (lead["id"], 12.34, "KWD")
    await eventually(lambda: moved_to(stack, lead, "PAID", "lead"))
    assert (await state(stack, lead, "lead"))[:2] == ("PAID", 12.34)


async def test_an_event_delivered_again_moves_the_deal_once_and_adds_once(stripe_stack):
    stack = stripe_stack
    flow, manager = await paid_pipeline(stack)
    item = await deal(stack.http, flow["id"], manager["id"], amount=1476, currency="EUR")
    event = event_of("payment_intent.succeeded", payment_intent(147600, "eur", deal_id=str(item["id"])))
    at_once = [await stack.anon.post(PATH, **delivery(event)) for _ in range(2)]
    assert all(response.status_code in (HTTPStatus.OK, HTTPStatus.ACCEPTED) for response in at_once), at_once
    await eventually(lambda: moved_to(stack, item, "PAID"))
    later = ok(await stack.anon.post(PATH, **delivery(event)))
    intent = event["data"]["object"]["id"]
    assert later["status"] == "duplicate" and intent in later["reason"]
    # The Checkout Session that made this PaymentIntent reports the same payment: it is not added again.
    session = checkout_session(147600, "eur", deal_id=str(item["id"])) | {"payment_intent": intent}
    again = ok(await stack.anon.post(PATH, **delivery(event_of("checkout.session.completed", session))))
    assert again["status"] == "duplicate"
    stage, paid, entries = await state(stack, item)
    assert (stage, paid) == ("PAID", 1476)
    assert [entry["data"]["event_id"] for entry in entries if entry["kind"] == "event_received"] == [f"stripe-{intent}"]
    assert [entry["data"]["to"] for entry in entries if entry["kind"] == "stage_changed"] == ["NEW", "PAID"]


async def test_a_delivery_whose_signature_does_not_verify_is_refused_and_changes_nothing(stripe_stack):
    stack = stripe_stack
    flow, manager = await paid_pipeline(stack)
    item = await deal(stack.http, flow["id"], manager["id"], amount=1476, currency="EUR")
    event = event_of("payment_intent.succeeded", payment_intent(147600, "eur", deal_id=str(item["id"])))
    body = json.dumps(event)
    before = await state(stack, item)
    tampered = delivery(body)
    tampered["content"] = body.replace("147600", "999999")
    missing = delivery(body)
    del missing["headers"][HEADER]
    refused = {
        "tampered body": tampered,
        "stale timestamp": delivery(body, at=int(time.time()) - stripe.Webhook.DEFAULT_TOLERANCE - 60),
        "wrong secret": delivery(body, secret="whsec_someone0elses0secret"),
        "missing header": missing,
        "not Stripe's form": {"content": body, "headers": {HEADER: "sha256=abc"}},
        "not ASCII": {"content": body, "headers": {HEADER: f"t={int(time.time())},v1=caf\u00e9".encode("latin-1")}},
    }
    for name, request in refused.items():
        response = await stack.anon.post(PATH, **request)
        assert_problem(response, HTTPStatus.BAD_REQUEST, "header", HEADER)
        assert HEADER in response.json()["detail"][0]["msg"], (name, response.text)
    stale = await stack.anon.post(PATH, **refused["stale timestamp"])
    assert "tolerance" in stale.json()["detail"][0]["msg"], stale.text
    for broken in ("{not json", "[1, 2]", "null", '{"object": "v2.core.event"}', "[" * 5000 + "]" * 5000):
        assert_problem(await stack.anon.post(PATH, **delivery(broken)), HTTPStatus.BAD_REQUEST, "body")
    assert await state(stack, item) == before

    ok(await stack.anon.post(PATH, **delivery(body)), HTTPStatus.ACCEPTED)
    await eventually(lambda: moved_to(stack, item, "PAID"))
    assert (await state(stack, item))[1] == 1476


async def test_without_a_signing_secret_the_route_takes_nothing_and_names_the_setting(stack):
    flow, manager = await paid_pipeline(stack)
    item = await deal(stack.http, flow["id"], manager["id"], amount=1476, currency="EUR")
    before = await state(stack, item)
    event = event_of("payment_intent.succeeded", payment_intent(147600, "eur", deal_id=str(item["id"])))
    response = await stack.anon.post(PATH, **delivery(event))
    assert response.status_code == HTTPStatus.NOT_FOUND, response.text
    assert "STAGEFLOW_STRIPE_WEBHOOK_SECRET" in response.json()["detail"]
    assert await state(stack, item) == before


async def test_events_that_are_not_payments_here_are_ignored_and_bad_item_references_refused(stripe_stack):
    stack = stripe_stack
    flow, manager = await paid_pipeline(stack)
    item = await deal(stack.http, flow["id"], manager["id"], amount=1476, currency="EUR")
    leads, _ = await paid_pipeline(stack, entity="lead")
    lead = await deal(stack.http, leads["id"], manager["id"], entity="lead", currency="EUR")
    archived = await deal(stack.http, flow["id"], manager["id"], title="Archived", amount=10, currency="EUR")
    ok(await stack.http.post(f"/deals/{archived['id']}/archive"))
    before = [await state(stack, item), await state(stack, lead, "lead"), await state(stack, archived)]
    mine = str(item["id"])

    ignored = {
        "charge.refunded": event_of("charge.refunded", {"object": "charge", "amount": 147600, "currency": "eur",
                                                        "metadata": {"deal_id": mine}}),
        "payment_status": event_of("checkout.session.completed",
                                   checkout_session(147600, "eur", payment_status="unpaid", deal_id=mine)),
        "amount_paid is 0": event_of("invoice.paid", invoice(0, "eur", deal_id=mine)),
        "names no item": event_of("payment_intent.succeeded", payment_intent(147600, "eur")),
        "names no item ": event_of("payment_intent.succeeded", payment_intent(147600, "eur", order="A-17")),
        " names no item": event_of("payment_intent.succeeded",
                                   payment_intent(147600, "eur", deal_id=mine) | {"metadata": "deal_id=1"}),
    }
    for why, event in ignored.items():
        answer = ok(await stack.anon.post(PATH, **delivery(event)))
        assert answer["status"] == "ignored" and why.strip() in answer["reason"], answer
        assert answer["event_id"] == event["id"]

    refused = [
        (payment_intent(147600, "eur", deal_id=mine, lead_id=str(lead["id"])), METADATA),
        (payment_intent(147600, "eur", deal_id="99999999"), [*METADATA, "deal_id"]),
        (payment_intent(147600, "eur", lead_id=mine), [*METADATA, "lead_id"]),
        (payment_intent(147600, "eur", deal_id=str(lead["id"])), [*METADATA, "deal_id"]),
        (payment_intent(147600, "eur", deal_id="forty-two"), [*METADATA, "deal_id"]),
        (payment_intent(147600, "eur", deal_id="0"), [*METADATA, "deal_id"]),
        (payment_intent(147600, "eur", deal_id="99999999999"), [*METADATA, "deal_id"]),
        (payment_intent(147600, "euro", deal_id=mine), ["body", "data", "object", "currency"]),
        (payment_intent(147600, "eur", deal_id=mine) | {"amount_received": "147600"},
         ["body", "data", "object", "amount_received"]),
        (payment_intent(147600, "eur", deal_id=mine) | {"amount_received": 14.5},
         ["body", "data", "object", "amount_received"]),
        (payment_intent(10**30, "eur", deal_id=mine), ["body", "data", "object", "amount_received"]),
    ]
    for source, loc in refused:
        response = await stack.anon.post(PATH, **delivery(event_of("payment_intent.succeeded", source)))
        assert_problem(response, HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
    for event in ({"id": "evt_1", "type": "payment_intent.succeeded", "data": "x"},
                  {"id": "evt_1", "type": 7, "data": {}}, {"type": "invoice.paid", "data": {"object": {}}}):
        response = await stack.anon.post(PATH, **delivery(event))
        assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY, response.text

    event = event_of("payment_intent.succeeded", payment_intent(1000, "eur", deal_id=str(archived["id"])))
    response = await stack.anon.post(PATH, **delivery(event))
    assert response.status_code == HTTPStatus.CONFLICT and "archived" in response.json()["detail"], response.text
    assert [await state(stack, item), await state(stack, lead, "lead"), await state(stack, archived)] == before


JSON_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats()
                | st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
A_DEAL = "<the deal's id>"
"""Stands for the id of a deal that exists, put in by the test."""


AMOUNT_FIELD = {"payment_intent.succeeded": "amount_received", "checkout.session.completed": "amount_total",
                "invoice.paid": "amount_paid"}
SOURCE = {"payment_intent.succeeded": payment_intent, "checkout.session.completed": checkout_session,
          "invoice.paid": invoice}
PLACES = [("id",), ("type",), ("object",), ("data",), ("data", "object"), ("data", "object", "currency"),
          ("data", "object", "amount"), ("data", "object", "payment_status"), ("data", "object", "metadata"),
          ("data", "object", "metadata", "deal_id"), ("data", "object", "metadata", "lead_id")]
ODD_VALUES = st.sampled_from([
    "", "0", "-3", " 7 ", "1e3", "\u0663", "99999999999", "x", "evt 1", "\u00e9v", "charge.refunded", "invoice.paid ",
    "v2.core.event", "unpaid", "euro", "EUR", -1, 0, 10**20, 2**63, 1.5, True, A_DEAL,
])


@st.composite
def stripe_like_events(draw: st.DrawFn) -> dict[str, Any]:
    """A payment event Stripe could send about the deal, with up to two of its fields replaced or removed."""
    kind = draw(st.sampled_from(list(SOURCE)))
    source = SOURCE[kind](draw(st.integers(min_value=1, max_value=10**7)),
                          draw(st.sampled_from(["eur", "EUR", "jpy", "kwd"])), deal_id=A_DEAL)
    event = event_of(kind, source, event_id=draw(st.sampled_from(["evt_1", "evt_2", "evt_3"])))
    for *parents, last in draw(st.lists(st.sampled_from(PLACES), max_size=2)):
        target: Any = event
        for part in parents:
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            last = AMOUNT_FIELD[kind] if last == "amount" else last
            if draw(st.booleans()):
                target[last] = draw(ODD_VALUES | JSON_VALUES)
            else:
                target.pop(last, None)
    return event


EVENTS = st.one_of(stripe_like_events(), stripe_like_events(), stripe_like_events(), JSON_VALUES)


@settings(max_examples=200, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(event=EVENTS)
async def test_no_signed_body_gets_a_server_error(stripe_stack, event):
    """Signed bodies of any shape, most of them Stripe-like events naming a real deal: never a 5xx, every 4xx
    with a detail, every 2xx a receipt."""
    stack = stripe_stack
    if "deal" not in stack.extras:
        flow, manager = await paid_pipeline(stack)
        stack.extras["deal"] = await deal(stack.http, flow["id"], manager["id"], amount=1476, currency="EUR")
    body = json.dumps(event).replace(json.dumps(A_DEAL), json.dumps(str(stack.extras["deal"]["id"])))
    response = await stack.anon.post(PATH, **delivery(body))
    assert response.status_code < 500, (body, response.status_code, response.text)
    answer = response.json()
    if response.status_code >= 400:
        assert answer.get("detail"), response.text
        where = answer["detail"][0]["loc"] if isinstance(answer["detail"], list) else []
        reached(f"{response.status_code} {'.'.join(str(part) for part in where)}")
    else:
        assert answer["status"] in ("accepted", "ignored", "duplicate"), response.text
        reached(f"{response.status_code} {answer['status']}")
