"""Deals and leads through the API: creation, moves, events, payments, changes, timelines, pending rules."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from http import HTTPStatus

from models.tables import IdempotentRequest, Item
from tests.api.support import assert_problem, crm, insert, stage_of, total, wait_for_stage
from tests.crm import deal, eventually, ok, pipeline, timeline, user

STAGES = ["NEW", "INVOICE", "PAID", "WON"]


async def test_deals_and_leads_enter_their_first_or_given_stage_and_its_rules_start(stack):
    flow, manager = await crm(stack, STAGES, automation={
        "NEW": {"rules": [{"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Hi {{Deal.Title}}"}}]},
    })
    leads = await pipeline(stack.http, ["INCOMING", "QUALIFIED"], entity="lead", name="Leads")
    contact = ok(await stack.member.post("/contacts", json={"name": "Anna"}), HTTPStatus.CREATED)

    first = await deal(stack.member, flow["id"], manager["id"], amount=1200.5, currency="EUR", contact_id=contact["id"],
                       close_date="2026-12-31", fields={"budget": 2000}, products=[{"name": "Sofa", "qty": 1}])
    assert (first["stage"], first["entity_type"], first["amount"], first["close_date"]) == ("NEW", "deal", 1200.5, "2026-12-31")
    assert (first["fields"], first["products"], first["contact_id"]) == ({"budget": 2000}, [{"name": "Sofa", "qty": 1}], contact["id"])
    assert first["entry_no"] == 1
    later = await deal(stack.member, flow["id"], manager["id"], stage="INVOICE", title="Table")
    assert later["stage"] == "INVOICE"
    lead = await deal(stack.member, leads["id"], manager["id"], entity="lead", title="Web form")
    assert (lead["stage"], lead["entity_type"]) == ("INCOMING", "lead")

    comments = await eventually(lambda: timeline(stack.member, first["id"], kind="comment"))
    assert [entry["text"] for entry in comments] == ["Hi Sofa for Anna"]
    assert ok(await stack.member.get(f"/deals/{first['id']}")) == first
    assert [row["id"] for row in ok(await stack.member.get("/deals", params={"stage": "INVOICE"}))] == [later["id"]]
    assert await total(stack.member, "/deals", pipeline_id=flow["id"]) == 2
    assert await total(stack.member, "/deals", contact_id=contact["id"]) == 1
    for params, loc, said in (
        ({"pipeline_id": flow["id"], "stage": "NOPE"}, "stage", f"pipeline {flow['id']} has no stage NOPE"),
        ({"stage": "NOPE"}, "stage", "no deal pipeline has a stage NOPE"),
        ({"stage": "INCOMING"}, "stage", "no deal pipeline has a stage INCOMING"),
        ({"pipeline_id": leads["id"]}, "pipeline_id", f"pipeline {leads['id']} holds leads, not deals"),
        ({"pipeline_id": 999}, "pipeline_id", "pipeline 999 does not exist"),
    ):
        refused = await stack.member.get("/deals", params=params)
        assert_problem(refused, HTTPStatus.UNPROCESSABLE_ENTITY, "query", loc)
        assert said in refused.json()["detail"][0]["msg"]
    assert [row["id"] for row in ok(await stack.member.get("/leads"))] == [lead["id"]]
    assert (await stack.member.get(f"/leads/{first['id']}")).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.member.get(f"/deals/{lead['id']}")).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.member.get("/deals/999")).status_code == HTTPStatus.NOT_FOUND


async def test_bad_items_are_refused_and_nothing_is_created(stack):
    flow, manager = await crm(stack, STAGES)
    leads = await pipeline(stack.http, ["INCOMING"], entity="lead", name="Leads")
    good = {"title": "Sofa", "pipeline_id": flow["id"], "responsible_id": manager["id"]}
    cases = [
        ({**good, "pipeline_id": leads["id"]}, ("body", "pipeline_id")),
        ({**good, "pipeline_id": 999}, ("body", "pipeline_id")),
        ({**good, "stage": "NOPE"}, ("body", "stage")),
        ({**good, "stage": "new"}, ("body", "stage")),
        ({**good, "responsible_id": 999}, ("body", "responsible_id")),
        ({**good, "contact_id": 999}, ("body", "contact_id")),
        ({**good, "company_id": 999}, ("body", "company_id")),
        ({**good, "colour": "red"}, ("body", "colour")),
        ({**good, "amount": -5}, ("body", "amount")),
        ({**good, "currency": "euro"}, ("body", "currency")),
        ({**good, "close_date": "tomorrow"}, ("body", "close_date")),
        ({**good, "title": "x" * 201}, ("body", "title")),
        ({**good, "fields": {"bad key": 1}}, ("body", "fields", "bad key", "[key]")),
        ({**good, "pipeline_id": 2**64}, ("body", "pipeline_id")),
        ({key: value for key, value in good.items() if key != "responsible_id"}, ("body", "responsible_id")),
    ]
    for body, loc in cases:
        assert_problem(await stack.member.post("/deals", json=body), HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
    nan = await stack.member.post("/deals", content=b'{"title": "x", "pipeline_id": 1, "responsible_id": 1, "amount": NaN}',
                                  headers={"Content-Type": "application/json"})
    assert_problem(nan, HTTPStatus.UNPROCESSABLE_ENTITY, "body", "amount")
    lead_in_deals = await stack.member.post("/leads", json=good)
    assert_problem(lead_in_deals, HTTPStatus.UNPROCESSABLE_ENTITY, "body", "pipeline_id")
    assert await total(stack.member, "/deals") == 0
    assert await total(stack.member, "/leads") == 0


async def test_a_refusal_echoes_a_long_input_short_and_names_a_body_nested_too_deep(stack):
    flow, manager = await crm(stack, STAGES)
    long_title = await stack.member.post("/deals", json={"title": "x" * 100_000, "pipeline_id": flow["id"],
                                                         "responsible_id": manager["id"]})
    assert_problem(long_title, HTTPStatus.UNPROCESSABLE_ENTITY, "body", "title")
    assert len(long_title.content) < 2_000
    assert long_title.json()["detail"][0]["input"].endswith("… (100,000 characters)")
    big = await stack.member.post("/deals", json={"title": "Desk", "pipeline_id": flow["id"],
                                                  "responsible_id": manager["id"], "fields": ["x" * 10] * 500})
    assert_problem(big, HTTPStatus.UNPROCESSABLE_ENTITY, "body", "fields")
    assert "input" not in big.json()["detail"][0] and len(big.content) < 2_000
    deep = await stack.member.post("/deals", content="[" * 5000 + "]" * 5000,
                                   headers={"content-type": "application/json"})
    assert_problem(deep, HTTPStatus.UNPROCESSABLE_ENTITY, "body")
    assert "nested too deep" in deep.json()["detail"][0]["msg"]
    assert await total(stack.member, "/deals") == 0


async def test_creating_with_an_idempotency_key_makes_one_item(stack):
    flow, manager = await crm(stack, STAGES)
    body = {"title": "Web order 17", "pipeline_id": flow["id"], "responsible_id": manager["id"]}
    headers = {"Idempotency-Key": "order-17"}
    first = ok(await stack.member.post("/deals", json=body, headers=headers), HTTPStatus.CREATED)
    again = ok(await stack.member.post("/deals", json=body, headers=headers), HTTPStatus.CREATED)
    assert again == first
    other = ok(await stack.member.post("/deals", json=body, headers={"Idempotency-Key": "order-18"}), HTTPStatus.CREATED)
    assert other["id"] != first["id"]
    assert await total(stack.member, "/deals") == 2


async def test_moves_change_the_stage_and_bad_moves_change_nothing(stack):
    flow, manager = await crm(stack, STAGES)
    item = await deal(stack.member, flow["id"], manager["id"])
    moved = ok(await stack.member.post(f"/deals/{item['id']}/move", json={"stage": "INVOICE", "as_user_id": manager["id"]}))
    assert (moved["id"], moved["stage"], moved["entry_no"]) == (item["id"], "INVOICE", 2)

    assert_problem(await stack.member.post(f"/deals/{item['id']}/move", json={"stage": "NOPE"}), HTTPStatus.UNPROCESSABLE_ENTITY, "body", "stage")
    assert_problem(await stack.member.post(f"/deals/{item['id']}/move", json={"stage": "PAID", "as_user_id": 999}),
                   HTTPStatus.UNPROCESSABLE_ENTITY, "body", "as_user_id")
    assert_problem(await stack.member.post(f"/deals/{item['id']}/move", json={}), HTTPStatus.UNPROCESSABLE_ENTITY, "body", "stage")
    same = await stack.member.post(f"/deals/{item['id']}/move", json={"stage": "INVOICE"})
    assert same.status_code == HTTPStatus.CONFLICT
    assert (await stack.member.post("/deals/999/move", json={"stage": "PAID"})).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.member.post(f"/leads/{item['id']}/move", json={"stage": "PAID"})).status_code == HTTPStatus.NOT_FOUND
    assert await stage_of(stack, "deal", item["id"]) == "INVOICE"
    changes = await timeline(stack.member, item["id"], kind="stage_changed")
    assert len(changes) == 2
    assert changes[1]["author_id"] == manager["id"]


async def test_a_retried_move_returns_the_first_answer_and_does_not_move_again(stack):
    flow, manager = await crm(stack, STAGES)
    item = await deal(stack.member, flow["id"], manager["id"])
    retry = {"Idempotency-Key": "move-to-paid-1"}
    first = ok(await stack.member.post(f"/deals/{item['id']}/move", json={"stage": "PAID"}, headers=retry))
    ok(await stack.member.post(f"/deals/{item['id']}/move", json={"stage": "NEW"}))
    again = ok(await stack.member.post(f"/deals/{item['id']}/move", json={"stage": "PAID"}, headers=retry))
    assert again == first
    assert again["stage"] == "PAID"
    assert await stage_of(stack, "deal", item["id"]) == "NEW"
    assert len(await timeline(stack.member, item["id"], kind="stage_changed")) == 3
    # A currency in small letters is the same currency.
    small = await deal(stack.member, flow["id"], manager["id"], currency="pln")
    assert small["currency"] == "PLN"
    ok(await stack.member.post(f"/deals/{small['id']}/payments?wait=true", json={"amount": 7, "currency": "pln"}))
    assert ok(await stack.member.get(f"/deals/{small['id']}"))["paid"] == 7

    rejected = {"Idempotency-Key": "move-to-new"}
    refused = await stack.member.post(f"/deals/{item['id']}/move", json={"stage": "NEW"}, headers=rejected)
    ok(await stack.member.post(f"/deals/{item['id']}/move", json={"stage": "INVOICE"}))
    repeated = await stack.member.post(f"/deals/{item['id']}/move", json={"stage": "NEW"}, headers=rejected)
    assert refused.status_code == repeated.status_code == HTTPStatus.CONFLICT
    assert repeated.json() == refused.json()
    assert await stage_of(stack, "deal", item["id"]) == "INVOICE"


async def test_events_and_payments_reach_the_triggers(stack):
    flow, manager = await crm(stack, STAGES, automation={
        "INVOICE": {"triggers": [{"name": "shipped", "type": "custom", "filter": {"event": "order_shipped"}}]},
        "PAID": {"triggers": [{"name": "paid", "type": "payment_received", "filter": {"min_amount": 100}}]},
    })
    item = await deal(stack.member, flow["id"], manager["id"], currency="EUR")
    accepted = await stack.member.post(f"/deals/{item['id']}/events", json={"type": "order_shipped", "data": {"n": 1}})
    assert (accepted.status_code, accepted.json()) == (HTTPStatus.ACCEPTED, {"accepted": True})
    await wait_for_stage(stack, "deal", item["id"], "INVOICE")

    ok(await stack.member.post(f"/deals/{item['id']}/payments", json={"amount": 50}), HTTPStatus.ACCEPTED)
    await asyncio.sleep(0.5)
    assert await stage_of(stack, "deal", item["id"]) == "INVOICE"
    ok(await stack.member.post(f"/deals/{item['id']}/payments", json={"amount": 150, "currency": "EUR"}), HTTPStatus.ACCEPTED)
    await wait_for_stage(stack, "deal", item["id"], "PAID")

    for path, body, loc in (
        ("payments", {"amount": 0}, ("body", "amount")),
        ("payments", {"amount": 10, "currency": "e1r"}, ("body", "currency")),
        ("payments", {"amount": "lots"}, ("body", "amount")),
        ("events", {"type": "Order Shipped"}, ("body", "type")),
        ("events", {"type": "x", "data": [1]}, ("body", "data")),
        ("events", {"type": "x", "extra": 1}, ("body", "extra")),
    ):
        assert_problem(await stack.member.post(f"/deals/{item['id']}/{path}", json=body), HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
    for path, body in (("events", {"type": "order_shipped"}), ("payments", {"amount": 10})):
        assert (await stack.member.post(f"/deals/999/{path}", json=body)).status_code == HTTPStatus.NOT_FOUND
        assert (await stack.member.post(f"/leads/{item['id']}/{path}", json=body)).status_code == HTTPStatus.NOT_FOUND
    assert len(await timeline(stack.member, item["id"], kind="stage_changed")) == 3


async def test_changing_fields_and_the_responsible_are_events_for_triggers(stack):
    flow, manager = await crm(stack, STAGES, automation={
        "INVOICE": {"triggers": [{"name": "budget", "type": "field_changed", "filter": {"fields": ["Fields.budget"]}}]},
        "PAID": {"triggers": [{"name": "handover", "type": "responsible_changed"}]},
    })
    other = await user(stack.http, "Other")
    item = await deal(stack.member, flow["id"], manager["id"], fields={"budget": 100, "note": "x"})

    noted = ok(await stack.member.patch(f"/deals/{item['id']}", json={"fields": {"note": "y"}, "title": "Big sofa"}))
    assert (noted["title"], noted["fields"]) == ("Big sofa", {"budget": 100, "note": "y"})
    await asyncio.sleep(0.5)
    assert await stage_of(stack, "deal", item["id"]) == "NEW"
    changed = ok(await stack.member.patch(f"/deals/{item['id']}", json={"fields": {"budget": 250, "note": None}}))
    assert changed["fields"] == {"budget": 250}
    await wait_for_stage(stack, "deal", item["id"], "INVOICE")

    for body, loc in (
        ({"responsible_id": 999}, ("body", "responsible_id")),
        ({"responsible_id": None}, ("body", "responsible_id")),
        ({"stage": "WON"}, ("body", "stage")),
        ({"amount": -1}, ("body", "amount")),
    ):
        assert_problem(await stack.member.patch(f"/deals/{item['id']}", json=body), HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
    assert ok(await stack.member.get(f"/deals/{item['id']}"))["responsible_id"] == manager["id"]

    handed = ok(await stack.member.patch(f"/deals/{item['id']}", json={"responsible_id": other["id"], "by_user_id": manager["id"]}))
    assert handed["responsible_id"] == other["id"]
    await wait_for_stage(stack, "deal", item["id"], "PAID")
    assert (await stack.member.patch("/deals/999", json={"title": "x"})).status_code == HTTPStatus.NOT_FOUND


async def test_timelines_are_oldest_first_and_filterable(stack):
    flow, manager = await crm(stack, STAGES)
    item = await deal(stack.member, flow["id"], manager["id"])
    other = await deal(stack.member, flow["id"], manager["id"], title="Other")
    for text in ("first", "second", "third"):
        ok(await stack.member.post(f"/deals/{item['id']}/comments", json={"text": text, "author_id": manager["id"]}),
           HTTPStatus.CREATED)
    ok(await stack.member.post(f"/deals/{other['id']}/comments", json={"text": "elsewhere"}), HTTPStatus.CREATED)

    entries = await timeline(stack.member, item["id"])
    assert entries[0]["kind"] == "stage_changed"
    assert [entry["text"] for entry in entries if entry["kind"] == "comment"] == ["first", "second", "third"]
    assert [entry["at"] for entry in entries] == sorted(entry["at"] for entry in entries)
    page = await stack.member.get(f"/deals/{item['id']}/timeline", params={"kind": "comment", "limit": 2, "offset": 1})
    assert page.headers["X-Total-Count"] == "3"
    assert [entry["text"] for entry in page.json()] == ["second", "third"]

    everywhere = ok(await stack.member.get("/timeline", params={"kind": "comment"}))
    assert [entry["text"] for entry in everywhere] == ["first", "second", "third", "elsewhere"]
    by_author = ok(await stack.member.get("/timeline", params={"author_id": manager["id"], "kind": "comment"}))
    assert len(by_author) == 3
    assert await total(stack.member, "/timeline", item_id=other["id"], kind="comment") == 1
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert await total(stack.member, "/timeline", since=future) == 0
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert await total(stack.member, "/timeline", since=past, kind="comment") == 4

    for body, loc in (({"text": ""}, ("body", "text")), ({"text": "x", "author_id": 999}, ("body", "author_id"))):
        assert_problem(await stack.member.post(f"/deals/{item['id']}/comments", json=body), HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
    assert_problem(await stack.member.get("/timeline", params={"since": "yesterday"}), HTTPStatus.UNPROCESSABLE_ENTITY, "query", "since")
    assert (await stack.member.get("/deals/999/timeline")).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.member.get(f"/leads/{item['id']}/timeline")).status_code == HTTPStatus.NOT_FOUND
    assert await total(stack.member, f"/deals/{item['id']}/timeline", kind="comment") == 3


async def test_the_crm_timeline_filters_by_pipeline_and_entity(stack):
    flow, manager = await crm(stack, STAGES)
    other_flow = ok(await stack.http.post("/pipelines", json={
        "entity_type": "deal", "name": "Delivery", "stages": [{"code": "NEW", "name": "New"}]}), HTTPStatus.CREATED)
    leads = ok(await stack.http.post("/pipelines", json={
        "entity_type": "lead", "name": "Leads", "stages": [{"code": "L_NEW", "name": "New"}]}), HTTPStatus.CREATED)
    here = await deal(stack.member, flow["id"], manager["id"])
    there = await deal(stack.member, other_flow["id"], manager["id"])
    lead = await deal(stack.member, leads["id"], manager["id"], entity="lead")
    for path, text in ((f"/deals/{here['id']}", "here"), (f"/deals/{there['id']}", "there"), (f"/leads/{lead['id']}", "lead")):
        ok(await stack.member.post(f"{path}/comments", json={"text": text}), HTTPStatus.CREATED)

    async def texts(**params) -> list[str]:
        return [entry["text"] for entry in ok(await stack.member.get("/timeline", params={"kind": "comment", **params}))]

    assert await texts(pipeline_id=flow["id"]) == ["here"]
    assert await texts(pipeline_id=other_flow["id"]) == ["there"]
    assert await texts(entity="deal") == ["here", "there"]
    assert await texts(entity="lead") == ["lead"]
    assert await texts(entity="lead", pipeline_id=flow["id"]) == []
    assert_problem(await stack.member.get("/timeline", params={"entity": "task"}), HTTPStatus.UNPROCESSABLE_ENTITY,
                   "query", "entity")
    assert_problem(await stack.member.get("/timeline", params={"pipeline_id": 0}), HTTPStatus.UNPROCESSABLE_ENTITY,
                   "query", "pipeline_id")


async def test_pending_lists_the_rules_still_waiting(stack):
    flow, manager = await crm(stack, STAGES, automation={
        "NEW": {"rules": [
            {"name": "now", "type": "add_timeline_entry", "settings": {"text": "now"}},
            {"name": "late", "type": "notify_supervisor", "delay": "24h", "settings": {"text": "{{Deal.Title}} waits"}},
        ]},
    })
    item = await deal(stack.member, flow["id"], manager["id"])
    await eventually(lambda: timeline(stack.member, item["id"], kind="comment"))

    async def waiting() -> list[dict]:
        return [rule for rule in ok(await stack.member.get(f"/deals/{item['id']}/pending")) if rule["rule"] == "late"]

    late = (await eventually(waiting))[0]
    due = datetime.fromisoformat(late["due"])
    assert timedelta(hours=23) < due - datetime.now(timezone.utc) <= timedelta(hours=24)
    assert all(rule["rule"] != "now" for rule in ok(await stack.member.get(f"/deals/{item['id']}/pending")))
    ok(await stack.member.post(f"/deals/{item['id']}/move", json={"stage": "WON"}))
    assert ok(await stack.member.get(f"/deals/{item['id']}/pending")) == []
    assert (await stack.member.get("/deals/999/pending")).status_code == HTTPStatus.NOT_FOUND


async def test_an_item_whose_creation_did_not_reach_the_workflow_service_can_be_resumed(stack):
    flow, manager = await crm(stack, STAGES)
    stranded, retried = insert(
        stack,
        Item(entity_type="deal", title="Stranded", pipeline_id=flow["id"], responsible_id=manager["id"]),
        Item(entity_type="deal", title="Web order 9", pipeline_id=flow["id"], responsible_id=manager["id"]),
    )
    insert(stack, IdempotentRequest(key="deals/create order-9", route="deals/create", status_code=HTTPStatus.CREATED,
                                    response={"item_id": retried.id, "stage": "INVOICE"}))
    assert ok(await stack.member.get(f"/deals/{stranded.id}"))["stage"] is None
    for path, body in (("events", {"type": "x"}), ("payments", {"amount": 5})):
        assert (await stack.member.post(f"/deals/{stranded.id}/{path}", json=body)).status_code == HTTPStatus.CONFLICT
    assert ok(await stack.member.get(f"/deals/{stranded.id}/pending")) == []

    entered = ok(await stack.member.post(f"/deals/{stranded.id}/move", json={"stage": "NEW"}))
    assert entered["stage"] == "NEW"
    body = {"title": "Web order 9", "pipeline_id": flow["id"], "responsible_id": manager["id"]}
    resumed = ok(await stack.member.post("/deals", json=body, headers={"Idempotency-Key": "order-9"}), HTTPStatus.CREATED)
    assert (resumed["id"], resumed["stage"]) == (retried.id, "INVOICE")
    assert await total(stack.member, "/deals") == 2
