"""An `Idempotency-Key` stands for one request: sent again with it, the request changes nothing again; sent with
another request (another amount, another stage, another item), it is refused naming the header, and nothing changes,
since the second request would otherwise be taken for the first and dropped without a word."""

from __future__ import annotations

from http import HTTPStatus

from tests.api.support import assert_problem, crm, stage_of, total
from tests.crm import deal, eventually, ok, timeline

REUSED = ("header", "Idempotency-Key")


async def test_a_payment_key_sent_with_another_amount_is_refused_and_adds_nothing(stack):
    flow, manager = await crm(stack, ["NEW", "WON"])
    item = await deal(stack.member, flow["id"], manager["id"], amount=1000, currency="EUR")
    path, key = f"/deals/{item['id']}/payments?wait=true", {"Idempotency-Key": "pay1"}
    ok(await stack.member.post(path, json={"amount": 5}, headers=key))
    other = await stack.member.post(path, json={"amount": 500}, headers=key)
    assert_problem(other, HTTPStatus.UNPROCESSABLE_ENTITY, *REUSED)
    assert "sent before with another request" in other.json()["detail"][0]["msg"]
    ok(await stack.member.post(path, json={"amount": 5}, headers=key))
    assert ok(await stack.member.get(f"/deals/{item['id']}"))["paid"] == 5
    # An event's key on the item is one event id: a payment cannot reuse an event's key either.
    ok(await stack.member.post(f"/deals/{item['id']}/events?wait=true", json={"type": "called"},
                               headers={"Idempotency-Key": "evt-1"}))
    assert_problem(await stack.member.post(path, json={"amount": 5}, headers={"Idempotency-Key": "evt-1"}),
                   HTTPStatus.UNPROCESSABLE_ENTITY, *REUSED)
    assert_problem(await stack.member.post(f"/deals/{item['id']}/events", json={"type": "emailed"},
                                           headers={"Idempotency-Key": "evt-1"}), HTTPStatus.UNPROCESSABLE_ENTITY, *REUSED)
    assert ok(await stack.member.get(f"/deals/{item['id']}"))["paid"] == 5
    events = [entry["data"]["type"] for entry in await timeline(stack.member, item["id"], kind="event_received")]
    assert events.count("called") == 1 and "emailed" not in events


async def test_a_move_key_sent_with_another_stage_is_refused_and_the_item_stays(stack):
    flow, manager = await crm(stack, ["NEW", "INVOICE", "WON"])
    item = await deal(stack.member, flow["id"], manager["id"])
    path, key = f"/deals/{item['id']}/move", {"Idempotency-Key": "abc"}
    first = ok(await stack.member.post(path, json={"stage": "INVOICE"}, headers=key))
    assert_problem(await stack.member.post(path, json={"stage": "WON"}, headers=key),
                   HTTPStatus.UNPROCESSABLE_ENTITY, *REUSED)
    assert await stage_of(stack, "deal", item["id"]) == "INVOICE"
    assert ok(await stack.member.post(path, json={"stage": "INVOICE"}, headers=key)) == first


async def test_a_creation_key_sent_with_another_deal_is_refused_and_makes_none(stack):
    flow, manager = await crm(stack, ["NEW", "WON"])
    body = {"title": "Web order 17", "pipeline_id": flow["id"], "responsible_id": manager["id"]}
    key = {"Idempotency-Key": "order-17"}
    first = ok(await stack.member.post("/deals", json=body, headers=key), HTTPStatus.CREATED)
    assert_problem(await stack.member.post("/deals", json={**body, "title": "Web order 18"}, headers=key),
                   HTTPStatus.UNPROCESSABLE_ENTITY, *REUSED)
    assert ok(await stack.member.post("/deals", json=body, headers=key), HTTPStatus.CREATED) == first
    assert await total(stack.member, "/deals") == 1


async def test_a_client_event_key_and_a_webhook_key_sent_with_another_request_are_refused(stack):
    flow, manager = await crm(stack, ["NEW", "PAID"], automation={
        "PAID": {"triggers": [{"name": "erp", "type": "webhook"}]},
    })
    secret = ok(await stack.member.get(f"/pipelines/{flow['id']}/automation"))["hooks"]["PAID/erp"].rsplit("/", 1)[1]
    contact = ok(await stack.member.post("/contacts", json={"name": "Anna Nowak"}), HTTPStatus.CREATED)
    item = await deal(stack.member, flow["id"], manager["id"], contact_id=contact["id"])
    key = {"Idempotency-Key": "vip-1"}
    ok(await stack.member.post(f"/contacts/{contact['id']}/events", json={"type": "became_vip"}, headers=key),
       HTTPStatus.ACCEPTED)
    assert_problem(await stack.member.post(f"/contacts/{contact['id']}/events", json={"type": "left"}, headers=key),
                   HTTPStatus.UNPROCESSABLE_ENTITY, *REUSED)
    ok(await stack.member.post(f"/contacts/{contact['id']}/events", json={"type": "became_vip"}, headers=key),
       HTTPStatus.ACCEPTED)

    hook = {"Idempotency-Key": "erp-call-1"}
    ok(await stack.anon.post(f"/hooks/{secret}", json={"deal_id": item["id"], "data": {"invoice": "A-1"}},
                             headers=hook), HTTPStatus.ACCEPTED)
    assert_problem(await stack.anon.post(f"/hooks/{secret}", json={"deal_id": item["id"], "data": {"invoice": "A-2"}},
                                         headers=hook), HTTPStatus.UNPROCESSABLE_ENTITY, *REUSED)


async def test_a_deals_event_key_and_its_clients_event_key_are_one_event_id(stack):
    """A client's event reaches each of its deals under the client's key: a key one of them took for another
    request refuses the client's event before any deal hears of it, and the other way round."""
    flow, manager = await crm(stack, ["NEW", "WON"])
    contact = ok(await stack.member.post("/contacts", json={"name": "Anna Nowak"}), HTTPStatus.CREATED)
    item = await deal(stack.member, flow["id"], manager["id"], contact_id=contact["id"])
    ok(await stack.member.post(f"/deals/{item['id']}/events?wait=true", json={"type": "called"},
                               headers={"Idempotency-Key": "k-1"}))
    assert_problem(await stack.member.post(f"/contacts/{contact['id']}/events", json={"type": "became_vip"},
                                           headers={"Idempotency-Key": "k-1"}), HTTPStatus.UNPROCESSABLE_ENTITY, *REUSED)
    ok(await stack.member.post(f"/contacts/{contact['id']}/events", json={"type": "became_vip"},
                               headers={"Idempotency-Key": "k-2"}), HTTPStatus.ACCEPTED)
    assert_problem(await stack.member.post(f"/deals/{item['id']}/events", json={"type": "emailed"},
                                           headers={"Idempotency-Key": "k-2"}), HTTPStatus.UNPROCESSABLE_ENTITY, *REUSED)

    async def events() -> list[str]:
        return sorted(entry["data"]["type"] for entry in await timeline(stack.member, item["id"], kind="event_received"))

    await eventually(lambda: _has(events, "became_vip"))
    assert await events() == ["became_vip", "called"]


async def _has(read, name: str) -> bool:
    return name in await read()


async def test_an_event_refused_for_an_archived_deal_leaves_its_key_free(stack):
    flow, manager = await crm(stack, ["NEW", "WON"])
    item = await deal(stack.member, flow["id"], manager["id"])
    ok(await stack.member.post(f"/deals/{item['id']}/archive"))
    key = {"Idempotency-Key": "late-1"}
    refused = await stack.member.post(f"/deals/{item['id']}/payments", json={"amount": 5}, headers=key)
    assert refused.status_code == HTTPStatus.CONFLICT
    ok(await stack.member.post(f"/deals/{item['id']}/restore"))
    ok(await stack.member.post(f"/deals/{item['id']}/payments?wait=true", json={"amount": 7}, headers=key))
    assert ok(await stack.member.get(f"/deals/{item['id']}"))["paid"] == 7
