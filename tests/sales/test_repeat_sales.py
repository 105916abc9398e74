"""Repeat sales: a repeat lead six months after "won", a copy of the deal in the Delivery pipeline."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from dateutil.relativedelta import relativedelta
from sqlmodel import select

from activities.rule import Deps, RuleFailed
from activities.rules import RULE_TYPES
from models.tables import Item, TimelineEntry
from tests.crm import automate, deal, eventually, kinds, ok, pipeline, timeline, user
from tests.sales.direct import rule_context

PRODUCTS = [{"name": "Sofa Oslo", "quantity": 1, "price": 900.0}, {"name": "Armchair", "quantity": 2, "price": 150.0}]


async def _shop(http) -> dict:
    """Users, a client with a company, and the pipelines: Sales, Delivery (deals) and Leads."""
    shop = {
        "manager": await user(http, "Marta Manager", email="marta@furniture.example"),
        "olga": await user(http, "Olga Owner"),
        "courier": await user(http, "Kuba Courier"),
        "contact": ok(await http.post("/contacts", json={"name": "Anna Nowak", "email": "anna@client.example",
                                                         "phone": "+48 601 234 567"}), 201),
        "company": ok(await http.post("/companies", json={"name": "Nowak Interiors"}), 201),
        "sales": await pipeline(http, ["NEW", "INVOICE", "WON", "LOST"], name="Sales"),
        "delivery": await pipeline(http, ["NEW", "SHIPPING", "DELIVERED"], name="Delivery"),
        "leads": await pipeline(http, ["NEW", "CALLED"], entity="lead", name="Leads"),
    }
    return shop


async def _order(http, shop: dict, **extra) -> dict:
    return await deal(
        http, shop["sales"]["id"], shop["manager"]["id"], title="Living room set", amount=1200, currency="EUR",
        contact_id=shop["contact"]["id"], company_id=shop["company"]["id"], close_date="2026-12-20",
        fields={"color": "grey", "floor": 3}, products=PRODUCTS, **extra,
    )


async def _items(http, entity: str, **params) -> list[dict]:
    return ok(await http.get(f"/{entity}s", params=params))


async def _started(http, entity: str, **params) -> list[dict]:
    """The items that have entered their first stage (a rule's new item exists a moment before that)."""
    return [item for item in await _items(http, entity, **params) if item["stage"] is not None]


def _entries(stack, item_id: int, kind: str) -> list[TimelineEntry]:
    with stack.session() as session:
        return list(session.exec(select(TimelineEntry).where(TimelineEntry.item_id == item_id,
                                                             TimelineEntry.kind == kind)))


async def test_repeat_lead_appears_six_months_after_won_and_runs_its_own_rules(ts_stack):
    stack = ts_stack
    shop = await _shop(stack.http)
    await automate(stack.http, shop["leads"]["id"], {"NEW": {"rules": [
        {"name": "call", "type": "create_task", "settings": {"title": "Call {{Lead.Contact.Name}}: {{Lead.Title}}"}},
    ]}})
    await automate(stack.http, shop["sales"]["id"], {"WON": {"rules": [
        {"name": "repeat", "type": "create_repeat_lead", "delay": "6mo",
         "settings": {"title": "Service renewal for {{Deal.Contact.Name}}", "responsible_id": shop["olga"]["id"]}},
    ]}})
    order = await _order(stack.http, shop, stage="WON")

    won = await eventually(lambda: timeline(stack.http, order["id"], kind="stage_changed"))
    entered = datetime.fromisoformat(won[-1]["at"])
    scheduled = await eventually(lambda: timeline(stack.http, order["id"], kind="rule_scheduled"))
    due = datetime.fromisoformat(scheduled[0]["data"]["due"])
    assert due == entered + relativedelta(months=6)

    now = await stack.env.get_current_time()
    await stack.env.sleep(due - now - timedelta(hours=1))
    assert await _items(stack.http, "lead") == []

    await stack.env.sleep(timedelta(hours=2))
    leads = await eventually(lambda: _started(stack.http, "lead"))
    assert len(leads) == 1
    lead = leads[0]
    assert lead["title"] == "Service renewal for Anna Nowak"
    assert lead["responsible_id"] == shop["olga"]["id"]
    assert (lead["contact_id"], lead["company_id"]) == (shop["contact"]["id"], shop["company"]["id"])
    assert (lead["pipeline_id"], lead["stage"]) == (shop["leads"]["id"], "NEW")
    assert lead["source_item_id"] == order["id"]
    assert datetime.fromisoformat(lead["created_at"]).date() == due.date()

    tasks = await eventually(lambda: _tasks(stack.http, lead_id=lead["id"]))
    assert [task["title"] for task in tasks] == ["Call Anna Nowak: Service renewal for Anna Nowak"]

    on_deal = await timeline(stack.http, order["id"], kind="repeat_lead_created")
    assert [entry["data"]["related_item_id"] for entry in on_deal] == [lead["id"]]
    assert f"lead #{lead['id']}" in on_deal[0]["text"]
    on_lead = await timeline(stack.http, lead["id"], entity="lead")
    assert [entry["kind"] for entry in on_lead][:2] == ["created_from", "stage_changed"]
    assert on_lead[0]["data"]["source_item_id"] == order["id"]


async def _tasks(http, **params) -> list[dict]:
    return ok(await http.get("/tasks", params=params))


async def test_repeat_lead_defaults_to_the_deals_responsible_and_the_first_lead_pipeline(stack):
    shop = await _shop(stack.http)
    later_leads = await pipeline(stack.http, ["FRESH"], entity="lead", name="Other leads")
    await automate(stack.http, shop["sales"]["id"], {"WON": {"rules": [
        {"name": "repeat", "type": "create_repeat_lead", "settings": {"title": "More for {{Deal.Company.Name}}"}},
    ]}})
    order = await _order(stack.http, shop)
    ok(await stack.http.post(f"/deals/{order['id']}/move", json={"stage": "WON"}))

    leads = await eventually(lambda: _items(stack.http, "lead", stage="NEW"))
    assert [(lead["title"], lead["responsible_id"], lead["pipeline_id"]) for lead in leads] == [
        ("More for Nowak Interiors", shop["manager"]["id"], shop["leads"]["id"])
    ]
    assert await _items(stack.http, "lead", pipeline_id=later_leads["id"]) == []
    done = await eventually(lambda: timeline(stack.http, order["id"], kind="rule_done"))
    assert done[0]["data"]["result"] == {"lead_id": leads[0]["id"]}


async def test_copy_to_delivery_carries_everything_and_runs_the_copys_rules(stack):
    shop = await _shop(stack.http)
    await automate(stack.http, shop["delivery"]["id"], {"NEW": {"rules": [
        {"name": "ship", "type": "create_task",
         "settings": {"title": "Deliver {{Deal.Title}} to {{Deal.Contact.Name}}",
                      "responsible_id": shop["courier"]["id"]}},
    ]}})
    await automate(stack.http, shop["sales"]["id"], {"WON": {"rules": [
        {"name": "to delivery", "type": "copy_deal", "settings": {"pipeline_id": shop["delivery"]["id"]}},
    ]}})
    order = await _order(stack.http, shop)
    ok(await stack.http.post(f"/deals/{order['id']}/move", json={"stage": "WON"}))

    copies = await eventually(lambda: _started(stack.http, "deal", pipeline_id=shop["delivery"]["id"]))
    assert len(copies) == 1
    copy = copies[0]
    assert copy["title"] == "Living room set Copy"
    assert copy["stage"] == "NEW"
    assert copy["id"] != order["id"] and copy["source_item_id"] == order["id"]
    for name in ("amount", "currency", "close_date", "fields", "products", "contact_id", "company_id",
                 "responsible_id"):
        assert copy[name] == order[name], name
    assert copy["products"] == PRODUCTS

    tasks = await eventually(lambda: _tasks(stack.http, deal_id=copy["id"]))
    assert [(task["title"], task["responsible_id"]) for task in tasks] == [
        ("Deliver Living room set Copy to Anna Nowak", shop["courier"]["id"])
    ]
    original = ok(await stack.http.get(f"/deals/{order['id']}"))
    assert original["stage"] == "WON" and original["pipeline_id"] == shop["sales"]["id"]
    on_original = await timeline(stack.http, order["id"], kind="deal_copied")
    assert [entry["data"]["related_item_id"] for entry in on_original] == [copy["id"]]
    on_copy = await timeline(stack.http, copy["id"])
    assert on_copy[0]["kind"] == "created_from" and on_copy[0]["data"]["source_item_id"] == order["id"]
    assert "stage_changed" in kinds(on_copy)


async def test_copy_with_title_stage_and_responsible_settings(stack):
    shop = await _shop(stack.http)
    await automate(stack.http, shop["sales"]["id"], {"WON": {"rules": [
        {"name": "to delivery", "type": "copy_deal",
         "settings": {"title": "Deliver: {{Deal.Title}} ({{Deal.Amount}} {{Deal.Currency}})",
                      "pipeline_id": shop["delivery"]["id"], "stage": "SHIPPING",
                      "responsible_id": shop["courier"]["id"]}},
        {"name": "again", "type": "copy_deal", "settings": {"stage": "NEW"}},
    ]}})
    order = await _order(stack.http, shop)
    ok(await stack.http.post(f"/deals/{order['id']}/move", json={"stage": "WON"}))

    copies = await eventually(lambda: _started(stack.http, "deal", pipeline_id=shop["delivery"]["id"]))
    assert [(c["title"], c["stage"], c["responsible_id"]) for c in copies] == [
        ("Deliver: Living room set (1200 EUR)", "SHIPPING", shop["courier"]["id"])
    ]
    same = await eventually(lambda: _items(stack.http, "deal", pipeline_id=shop["sales"]["id"], stage="NEW"))
    assert [(c["title"], c["source_item_id"]) for c in same] == [("Living room set Copy", order["id"])]


def _fields_named(response, status: int = 422) -> list[str]:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    return [str(error["loc"][-1]) for error in detail] if isinstance(detail, list) else [detail]


async def test_bad_settings_are_refused_at_save_time_naming_the_field(stack):
    manager = await user(stack.http, "Marta Manager")
    sales = await pipeline(stack.http, ["NEW", "WON"], name="Sales")

    def repeat(**settings) -> dict:
        return {"WON": {"rules": [{"name": "repeat", "type": "create_repeat_lead",
                                   "settings": {"title": "Renewal", **settings}}]}}

    def copying(**settings) -> dict:
        return {"WON": {"rules": [{"name": "copy", "type": "copy_deal", "settings": settings}]}}

    no_lead_pipeline = await stack.http.put(f"/pipelines/{sales['id']}/automation", json={"stages": repeat()})
    assert "pipeline_id" in _fields_named(no_lead_pipeline)
    assert "lead pipeline" in no_lead_pipeline.text

    leads = await pipeline(stack.http, ["NEW"], entity="lead", name="Leads")
    delivery = await pipeline(stack.http, ["NEW", "SHIPPING"], name="Delivery")
    good = await automate(stack.http, sales["id"], repeat(responsible_id=manager["id"]))

    cases = [
        (repeat(pipeline_id=delivery["id"]), "pipeline_id", "not leads"),
        (repeat(pipeline_id=9999), "pipeline_id", "does not exist"),
        (repeat(stage="CALLED"), "stage", "not a stage"),
        (repeat(responsible_id=9999), "responsible_id", "does not exist"),
        ({"WON": {"rules": [{"name": "repeat", "type": "create_repeat_lead", "settings": {}}]}}, "title", ""),
        (repeat(title="Renewal {{Deal.Nope}}"), "title", "Nope"),
        (copying(pipeline_id=leads["id"]), "pipeline_id", "not deals"),
        (copying(pipeline_id=delivery["id"], stage="WON"), "stage", "not a stage"),
        (copying(stage="WON"), "stage", "copied again"),
        (copying(responsible_id=0), "responsible_id", ""),
    ]
    for stages, field, words in cases:
        response = await stack.http.put(f"/pipelines/{sales['id']}/automation", json={"stages": stages})
        assert field in _fields_named(response), (stages, response.text)
        assert words in response.text, (stages, response.text)

    on_leads = await stack.http.put(f"/pipelines/{leads['id']}/automation", json={"stages": {
        "NEW": {"rules": [{"name": "copy", "type": "copy_deal", "settings": {}}]}}})
    assert on_leads.status_code == 422 and "copy_deal" in on_leads.text
    assert ok(await stack.http.get(f"/pipelines/{sales['id']}/automation"))["stages"] == good["stages"]


async def test_unknown_responsible_at_run_time_fails_the_rule_and_creates_nothing(stack):
    shop = await _shop(stack.http)
    await automate(stack.http, shop["sales"]["id"], {"WON": {"rules": [
        {"name": "repeat", "type": "create_repeat_lead",
         "settings": {"title": "Renewal", "responsible_id": "{{Deal.Fields.owner}}"}},
        {"name": "copy", "type": "copy_deal",
         "settings": {"pipeline_id": shop["delivery"]["id"], "responsible_id": "{{Deal.Fields.owner}}"}},
    ]}})
    order = await _order(stack.http, shop)
    ok(await stack.http.patch(f"/deals/{order['id']}", json={"fields": {"owner": 9999}}))
    ok(await stack.http.post(f"/deals/{order['id']}/move", json={"stage": "WON"}))

    failed = await eventually(lambda: _failed_both(stack, order["id"]))
    for entry in failed:
        assert "settings.responsible_id: user 9999 does not exist" in entry["text"]
    assert await _items(stack.http, "lead") == []
    assert [item["id"] for item in await _items(stack.http, "deal")] == [order["id"]]
    assert _entries(stack, order["id"], "repeat_lead_created") == []
    assert _entries(stack, order["id"], "deal_copied") == []


async def _failed_both(stack, item_id: int) -> list[dict] | None:
    failed = await timeline(stack.http, item_id, kind="rule_failed")
    return failed if len(failed) == 2 else None


async def test_a_retried_repeat_lead_is_created_and_started_once(stack):
    shop = await _shop(stack.http)
    order = await _order(stack.http, shop)
    settings = {"title": "Renewal for {{Deal.Contact.Name}}"}
    without_client = Deps(settings=stack.settings, database=stack.engine, client=None)

    with pytest.raises(RuntimeError):
        await RULE_TYPES["create_repeat_lead"].run(rule_context(stack, order["id"], "create_repeat_lead", settings, deps=without_client))
    half = await _items(stack.http, "lead")
    assert [(lead["title"], lead["stage"]) for lead in half] == [("Renewal for Anna Nowak", None)]

    first = await RULE_TYPES["create_repeat_lead"].run(rule_context(stack, order["id"], "create_repeat_lead", settings))
    again = await RULE_TYPES["create_repeat_lead"].run(rule_context(stack, order["id"], "create_repeat_lead", settings))
    assert first == again == {"lead_id": half[0]["id"]}
    leads = await _items(stack.http, "lead")
    assert [(lead["id"], lead["stage"], lead["entry_no"]) for lead in leads] == [(half[0]["id"], "NEW", 1)]
    assert kinds(await timeline(stack.http, half[0]["id"], entity="lead")) == ["created_from", "stage_changed"]
    assert len(_entries(stack, order["id"], "repeat_lead_created")) == 1


async def test_a_retried_copy_is_made_and_started_once(stack):
    shop = await _shop(stack.http)
    await automate(stack.http, shop["delivery"]["id"], {"NEW": {"rules": [
        {"name": "ship", "type": "create_task", "settings": {"title": "Deliver {{Deal.Title}}"}}]}})
    order = await _order(stack.http, shop)
    settings = {"pipeline_id": shop["delivery"]["id"]}
    without_client = Deps(settings=stack.settings, database=stack.engine, client=None)

    with pytest.raises(RuntimeError):
        await RULE_TYPES["copy_deal"].run(rule_context(stack, order["id"], "copy_deal", settings, deps=without_client))
    results = [await RULE_TYPES["copy_deal"].run(rule_context(stack, order["id"], "copy_deal", settings)) for _ in range(3)]
    copies = await _items(stack.http, "deal", pipeline_id=shop["delivery"]["id"])
    assert [(c["stage"], c["entry_no"]) for c in copies] == [("NEW", 1)]
    assert results == [{"deal_id": copies[0]["id"]}] * 3
    tasks = await eventually(lambda: _tasks(stack.http, deal_id=copies[0]["id"]))
    assert len(tasks) == 1
    assert len(_entries(stack, order["id"], "deal_copied")) == 1


async def test_copy_of_a_lead_is_refused_at_run_time(stack):
    shop = await _shop(stack.http)
    lead = await deal(stack.http, shop["leads"]["id"], shop["manager"]["id"], entity="lead", title="Enquiry")
    with pytest.raises(RuleFailed, match="copies deals"):
        await RULE_TYPES["copy_deal"].run(rule_context(stack, lead["id"], "copy_deal", {}))
    with stack.session() as session:
        assert len(list(session.exec(select(Item)))) == 1
