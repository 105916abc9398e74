"""What-if simulations on the real workflow code: the furniture shop's seven months, the same as a real run on the
time-skipping server, with nothing real touched and nothing sent."""

from __future__ import annotations

import asyncio
import io
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from pypdf import PdfReader
from sqlalchemy import func, select
from sqlmodel import SQLModel

from models.domain.timing import parse_duration
from scripts.demo import SHOP_DELAYS, SHOP_STORY, sales_automation, shop_simulation, simulation_table, web_form_order
from tests.crm import eventually, ok, timeline
from tests.stacks import binary, open_stack, stack_settings
from workflows.converter import DATA_CONVERTER


def row_counts(stack) -> dict[str, int]:
    with stack.engine.connect() as connection:
        return {
            name: connection.execute(select(func.count()).select_from(table)).scalar()
            for name, table in SQLModel.metadata.tables.items()
        }


def story(entries: list[dict[str, Any]], subject: str = "item") -> list[tuple]:
    """Each entry as (item, minutes after the subject entered its first stage, stage, kind, rule), in a fixed order."""
    origin = min(datetime.fromisoformat(e["at"]) for e in entries if e["kind"] == "stage_changed" and e["item"] == subject)
    stage: dict[str, str | None] = {}
    shaped = []
    for entry in entries:
        if entry["kind"] == "stage_changed":
            stage[entry["item"]] = entry["data"]["to"]
        minutes = round((datetime.fromisoformat(entry["at"]) - origin).total_seconds() / 60)
        shaped.append((entry["item"], minutes, stage.get(entry["item"]), entry["kind"], entry["rule"]))
    return sorted(shaped, key=lambda row: tuple("" if part is None else str(part) for part in row))


def simulated_story(answer: dict[str, Any]) -> list[tuple]:
    return story([{**entry, "item": entry["item"]["ref"]} for entry in answer["timeline"]])


async def simulate(http, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    return ok(await http.post("/simulations", json=body), status)


# -- the simulation is the real run ----------------------------------------------------------------------------


@pytest.fixture
async def ts_shop_stack(inbox, gateway, tmp_path):
    """The shop on a time-skipping server of its own, whose clock starts now, as a simulation's does: months
    counted from the same dates have the same lengths."""
    from scripts.demo import load_shop

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=DATA_CONVERTER
    )
    try:
        async with AsyncExitStack() as exit_stack:
            stack = await open_stack(exit_stack, env, stack_settings(tmp_path, temporal_search_attributes=False))
            assert stack.settings.smtp_port == inbox.port
            stack.extras["shop"] = await load_shop(stack.http, SHOP_DELAYS)
            yield stack
    finally:
        await env.shutdown()


async def test_a_simulation_has_the_timeline_of_the_same_story_run_for_real(ts_shop_stack):
    stack, http = ts_shop_stack, ts_shop_stack.http
    shop = stack.extras["shop"]
    answer = await simulate(http, shop_simulation(shop))

    # The same story for real, through the API, on the time-skipping server.
    order = await web_form_order(http, shop, "Living room set")
    [entered] = await timeline(http, order["id"], kind="stage_changed")
    start = datetime.fromisoformat(entered["at"])
    for step in [*SHOP_STORY, {"at": "+7mo"}]:
        now = await stack.env.get_current_time()
        await stack.env.sleep(start + parse_duration(step["at"][1:]) - now)
        if "move" in step:
            ok(await http.post(f"/deals/{order['id']}/move", json={"stage": step["move"]}))
        elif "payment" in step:
            ok(await http.post(f"/deals/{order['id']}/payments?wait=true", json=step["payment"]))
    copies = ok(await http.get("/deals", params={"pipeline_id": shop.delivery["id"]}))
    leads = ok(await http.get("/leads"))
    assert len(copies) == len(leads) == 1
    refs = {("deal", order["id"]): "item", ("deal", copies[0]["id"]): "created-1", ("lead", leads[0]["id"]): "created-2"}
    real = []
    for (entity, item_id), ref in refs.items():
        real += [{**entry, "item": ref, "rule": entry["rule_name"]}
                 for entry in await timeline(http, item_id, entity=entity)]

    assert simulated_story(answer) == story(real)
    assert answer["stage"] == ok(await http.get(f"/deals/{order['id']}"))["stage"] == "WON"
    kinds = [(entry["kind"], entry["rule"]) for entry in answer["timeline"]]
    assert ("rule_done", "late") in kinds and ("repeat_lead_created", "repeat") in kinds


# -- what a simulation shows, and that nothing real changes ---------------------------------------------------------


async def test_a_simulation_shows_every_effect_and_changes_and_sends_nothing(shop_stack, inbox, gateway):
    http, shop = shop_stack.http, shop_stack.extras["shop"]
    before = row_counts(shop_stack)

    answer = await simulate(http, shop_simulation(shop))

    assert answer["complete"] is True and answer["stage"] == "WON" and answer["wall_ms"] > 0
    started = datetime.fromisoformat(answer["started_at"])
    assert datetime.fromisoformat(answer["ended_at"]) >= started + parse_duration("7mo")
    effects = answer["effects"]
    sms, email, delivery_sms = effects["messages"]
    assert (sms["rule"], sms["channel"], sms["to"], sms["status"]) == ("ack", "sms", "+48601234567", "recorded")
    assert sms["body"].startswith("Hello Anna Nowak, thank you for your order at Oak & Linen Furniture.")
    [invoice] = effects["documents"]
    assert (email["rule"], email["channel"], email["status"]) == ("send invoice", "email", "recorded")
    assert email["subject"] == f"Invoice {invoice['number']} for Living room set"
    assert email["attachments"][0]["filename"] == f"{invoice['number']}.pdf"
    assert (delivery_sms["item"]["ref"], delivery_sms["rule"]) == ("created-1", "on its way")
    pdf = await http.get(invoice["pdf"])
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert invoice["number"] in text and "Anna Nowak" in text
    [late] = effects["notifications"]
    assert late["rule"] == "late" and late["user_id"] == shop.supervisor["id"]
    assert abs(datetime.fromisoformat(late["at"]) - started - timedelta(hours=24)) < timedelta(minutes=1)
    warehouse, call = effects["tasks"]
    assert warehouse["rule"] == "warehouse" and warehouse["responsible_id"] == shop.warehouse["id"]
    assert call["item"]["ref"] == "created-2" and call["title"].startswith("Call Anna Nowak")
    copy, lead = effects["items_created"]
    assert (copy["entity"], copy["title"], copy["stage"]) == ("deal", "Delivery: Living room set", "NEW")
    assert (lead["entity"], lead["stage"], lead["from"]) == ("lead", "NEW", {"entity": "deal", "ref": "item"})
    won = next(entry for entry in answer["timeline"] if entry["kind"] == "stage_changed" and entry["data"]["to"] == "WON")
    six_months_after_won = datetime.fromisoformat(won["at"]) + parse_duration("6mo")
    assert six_months_after_won <= datetime.fromisoformat(lead["at"]) < six_months_after_won + timedelta(minutes=1)
    assert [step["result"] for step in answer["script"]] == [
        "moved to PREPARE_DOCUMENTS", "payment_received: trigger paid matched, moved to INVOICE", "moved to WON",
    ]

    assert row_counts(shop_stack) == before
    assert ok(await http.get("/deals")) == [] and ok(await http.get("/leads")) == []
    assert inbox.messages == [] and gateway.requests == []
    assert ok(await http.get(f"/simulations/{answer['id']}")) == answer


async def test_the_demo_prints_the_seven_months_as_a_table(shop_stack):
    from scripts.demo import simulate as demo_simulate

    table = simulation_table(await demo_simulate(shop_stack.http, shop_stack.extras["shop"])).splitlines()

    assert table[0].split() == ["when", "date", "item", "what"]
    rows = [(line[2:12].strip(), line[25:41].strip(), line[42:]) for line in table[1:]]
    assert [when for when, _, what in rows if what.startswith("Rule late")] == ["+1d"]
    assert [(item, what) for _, item, what in rows if what.startswith("Stage")] == [
        ("deal", "Stage — → NEW (created)"), ("deal", "Stage NEW → PREPARE_DOCUMENTS (moved by user)"),
        ("deal", "Stage PREPARE_DOCUMENTS → INVOICE (moved by trigger paid)"),
        ("deal", "Stage INVOICE → WON (moved by user)"),
        ("deal (created-1)", "Stage — → NEW (created)"), ("lead (created-2)", "Stage — → NEW (created)"),
    ]
    [when] = [when for when, _, what in rows if what.startswith("Rule repeat")]
    assert 181 <= int(when[1:].split("d")[0]) <= 190


async def test_the_draft_automation_is_simulated_and_the_saved_one_kept(shop_stack):
    http, shop = shop_stack.http, shop_stack.extras["shop"]
    saved = ok(await http.get(f"/pipelines/{shop.sales['id']}/automation"))
    draft = sales_automation(shop, SHOP_DELAYS)
    draft["stages"]["NEW"]["rules"][0]["settings"]["text"] = "Draft: hello {{Deal.Contact.Name}}"

    answer = await simulate(http, {**shop_simulation(shop, "1d"), "script": [], "automation": draft})

    assert answer["effects"]["messages"][0]["body"] == "Draft: hello Anna Nowak"
    assert ok(await http.get(f"/pipelines/{shop.sales['id']}/automation")) == saved


async def test_a_draft_with_an_error_is_a_422_naming_it_and_nothing_runs(shop_stack):
    http, shop = shop_stack.http, shop_stack.extras["shop"]
    before = row_counts(shop_stack)
    draft = sales_automation(shop, {**SHOP_DELAYS, "late": "soon"})

    response = await http.post("/simulations", json={**shop_simulation(shop), "automation": draft})

    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"][:7] == ["body", "automation", "stages", "NEW", "rules", 1, "delay"]
    assert not (shop_stack.settings.data_dir / "simulations").exists()
    assert row_counts(shop_stack) == before


@pytest.mark.parametrize(("change", "loc"), [
    ({"script": [{"at": "+1d", "move": "SHIPPED"}]}, ["body", "script", 0, "move"]),
    ({"horizon": "3y"}, ["body", "horizon"]),
    ({"horizon": "soon"}, ["body", "horizon"]),
    ({"horizon": "-1d"}, ["body", "horizon"]),
    ({"script": [{"at": "2020-01-01T00:00:00Z", "move": "WON"}]}, ["body", "script", 0, "at"]),
    ({"script": [{"at": "+8mo", "move": "WON"}]}, ["body", "script", 0, "at"]),
    ({"script": [{"at": "+1x", "move": "WON"}]}, ["body", "script", 0, "at"]),
    ({"script": [{"at": "+1d", "move": "WON", "payment": {"amount": 5}}]}, ["body", "script", 0]),
    ({"script": [{"at": "+1d"}]}, ["body", "script", 0]),
    ({"script": [{"at": "+1d", "task": {"rule": "nope", "status": "completed"}}]}, ["body", "script", 0, "task", "rule"]),
    ({"script": [{"at": "+1d", "patch": {"contact_id": 99999}}]}, ["body", "script", 0, "patch", "contact_id"]),
    ({"webhooks": {"nope": {"status": 200}}}, ["body", "webhooks", "nope"]),
    ({"item": {"title": "Sofa", "responsible_id": 99999}}, ["body", "item", "responsible_id"]),
    ({"item": {"title": "Sofa", "responsible_id": 1, "stage": "SHIPPED"}}, ["body", "item", "stage"]),
    ({"pipeline_id": 99999}, ["body", "pipeline_id"]),
])
async def test_bad_simulation_requests_are_422_naming_the_field(shop_stack, change, loc):
    http, shop = shop_stack.http, shop_stack.extras["shop"]
    before = row_counts(shop_stack)

    response = await http.post("/simulations", json={**shop_simulation(shop), **change})

    assert response.status_code == 422, response.text
    assert loc in [problem["loc"][: len(loc)] for problem in response.json()["detail"]], response.json()
    assert row_counts(shop_stack) == before


async def test_simulations_are_for_admins_and_unknown_ones_are_not_found(shop_stack):
    shop = shop_stack.extras["shop"]
    assert (await shop_stack.member.post("/simulations", json=shop_simulation(shop))).status_code == 403
    assert (await shop_stack.anon.post("/simulations", json=shop_simulation(shop))).status_code == 401
    assert (await shop_stack.http.get("/simulations/0123456789abcdef")).status_code == 404
    assert (await shop_stack.http.get("/simulations/not-an-id")).status_code == 422
    assert (await shop_stack.http.get("/simulations/0123456789abcdef/documents/1/pdf")).status_code == 404
    assert (await shop_stack.http.post("/deals/99999/simulate", json={})).status_code == 404


@pytest.fixture
def one_at_a_time(monkeypatch):
    monkeypatch.setenv("STAGEFLOW_SIMULATIONS", "1")


async def test_one_simulation_more_than_the_service_allows_is_a_429(one_at_a_time, shop_stack):
    http, shop = shop_stack.http, shop_stack.extras["shop"]
    first, second = await asyncio.gather(
        http.post("/simulations", json=shop_simulation(shop)), http.post("/simulations", json=shop_simulation(shop))
    )
    assert sorted([first.status_code, second.status_code]) == [200, 429]
    busy = first if first.status_code == 429 else second
    assert "at once" in busy.json()["detail"]
    assert (await http.post("/simulations", json=shop_simulation(shop))).status_code == 200


@pytest.fixture
def no_time(monkeypatch):
    monkeypatch.setenv("STAGEFLOW_SIMULATION_SECONDS", "0.001")


async def test_a_simulation_past_its_wall_time_answers_with_what_it_simulated(no_time, shop_stack):
    answer = await simulate(shop_stack.http, shop_simulation(shop_stack.extras["shop"]))
    assert answer["complete"] is False and "wall-time limit" in answer["stopped"]
    assert answer["timeline"][0]["kind"] == "stage_changed" and answer["stage"] == "NEW"


# -- an item that exists -------------------------------------------------------------------------------------------


async def test_an_existing_deal_goes_on_from_its_entry_without_repeating_what_was_done(shop_stack, gateway):
    http, shop = shop_stack.http, shop_stack.extras["shop"]
    order = await web_form_order(http, shop, "Dining table")
    assert await eventually(lambda: _kinds(http, order["id"], "ack", "rule_done"))
    [entered] = await timeline(http, order["id"], kind="stage_changed")
    before = row_counts(shop_stack)

    answer = ok(await http.post(f"/deals/{order['id']}/simulate", json={"horizon": "2d"}))

    assert answer["stage"] == "NEW" and answer["effects"]["messages"] == []
    assert ("rule_done", "ack") not in [(entry["kind"], entry["rule"]) for entry in answer["timeline"]]
    [late] = answer["effects"]["notifications"]
    due = datetime.fromisoformat(entered["at"]) + timedelta(hours=24)
    assert abs(datetime.fromisoformat(late["at"]) - due) < timedelta(minutes=1)
    assert row_counts(shop_stack) == before and len(gateway.requests) == 1

    moved = ok(await http.post(f"/deals/{order['id']}/simulate", json={
        "horizon": "1d", "script": [{"at": "+1h", "move": "PREPARE_DOCUMENTS"}]}))
    assert moved["stage"] == "PREPARE_DOCUMENTS" and [d["template"] for d in moved["effects"]["documents"]] == ["invoice"]
    assert ok(await http.get(f"/deals/{order['id']}"))["stage"] == "NEW"


async def _kinds(http, deal_id: int, rule: str, kind: str) -> bool:
    return kind in [entry["kind"] for entry in await timeline(http, deal_id) if entry["rule_name"] == rule]


# -- outside calls ---------------------------------------------------------------------------------------------


async def test_a_webhook_gets_the_scripted_answer_or_is_recorded_as_would_call(shop_stack):
    http, shop = shop_stack.http, shop_stack.extras["shop"]
    draft = {"stages": {"NEW": {"rules": [
        {"name": "hook", "type": "webhook", "settings": {
            "url": "https://erp.example/orders?deal={{Deal.Title}}", "returns": ["order_no"]}},
        {"name": "note", "type": "add_timeline_entry", "settings": {"text": "Order {{Rule.hook.order_no}}"}},
    ]}}}
    body = {**shop_simulation(shop, "1h"), "script": [], "automation": draft}

    scripted = await simulate(http, {**body, "webhooks": {"hook": {"status": 201, "json": {"order_no": "A-17"}}}})
    [call] = scripted["effects"]["webhooks"]
    assert (call["rule"], call["method"], call["status"], call["scripted"]) == ("hook", "POST", 201, True)
    assert call["url"] == "https://erp.example/orders" and call["body"]["item"]["Title"] == "Living room set"
    assert "Order A-17" in [entry["text"] for entry in scripted["timeline"]]

    unscripted = await simulate(http, body)
    [call] = unscripted["effects"]["webhooks"]
    assert (call["status"], call["scripted"]) == (200, False)
