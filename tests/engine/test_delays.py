"""Durable delays on the time-skipping server: real 24-hour and six-month timers in milliseconds."""

from __future__ import annotations

from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta
from sqlmodel import select

from models.tables import Notification
from tests.crm import automate, deal, eventually, kinds, ok, pipeline, timeline, user


async def _setup(stack, rules: list[dict], stages=("NEW", "WORK", "WON")) -> tuple[dict, dict, dict]:
    boss = await user(stack.http, "Boss")
    manager = await user(stack.http, "Manager", supervisor_id=boss["id"])
    flow = await pipeline(stack.http, list(stages))
    await automate(stack.http, flow["id"], {"NEW": {"rules": rules, "triggers": []}})
    return flow, manager, boss


def _notifications(stack, user_id: int) -> list[Notification]:
    with stack.session() as session:
        return list(session.exec(select(Notification).where(Notification.user_id == user_id)))


async def test_24h_rule_fires_after_24_hours_and_not_before(ts_stack):
    stack = ts_stack
    flow, manager, boss = await _setup(
        stack, [{"name": "late", "type": "notify_supervisor", "delay": "24h",
                 "settings": {"text": "{{Deal.Responsible.Name}} has not moved {{Deal.Title}}"}}]
    )
    item = await deal(stack.http, flow["id"], manager["id"])

    await stack.env.sleep(timedelta(hours=23, minutes=59))
    assert _notifications(stack, boss["id"]) == []

    await stack.env.sleep(timedelta(minutes=2))
    notes = await eventually(lambda: _notifications(stack, boss["id"]))
    assert [note.text for note in notes] == ["Manager has not moved Sofa for Anna"]
    done = [entry for entry in await timeline(stack.http, item["id"]) if entry["kind"] == "rule_done"]
    assert len(done) == 1
    entered = (await timeline(stack.http, item["id"], kind="stage_changed"))[0]
    waited = datetime.fromisoformat(done[0]["at"]) - datetime.fromisoformat(entered["at"])
    assert timedelta(hours=24) <= waited < timedelta(hours=24, minutes=1)


async def test_six_month_rule_fires_on_the_right_calendar_day(ts_stack):
    stack = ts_stack
    flow, manager, boss = await _setup(stack, [])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "repeat", "type": "notify_employee", "delay": "6mo",
         "settings": {"user_ids": [boss["id"]], "text": "Call about {{Deal.Title}} again"}}], "triggers": []}})
    item = await deal(stack.http, flow["id"], manager["id"])
    entered = datetime.fromisoformat((await timeline(stack.http, item["id"], kind="stage_changed"))[0]["at"])
    expected = entered + relativedelta(months=6)

    scheduled = await eventually(lambda: _scheduled(stack, item["id"]))
    assert datetime.fromisoformat(scheduled["data"]["due"]) == expected

    await stack.env.sleep(expected - entered - timedelta(hours=1))
    assert _notifications(stack, boss["id"]) == []
    await stack.env.sleep(timedelta(hours=2))
    notes = await eventually(lambda: _notifications(stack, boss["id"]))
    assert len(notes) == 1
    done = [entry for entry in await timeline(stack.http, item["id"]) if entry["kind"] == "rule_done"]
    assert datetime.fromisoformat(done[0]["at"]).date() == expected.date()


async def _scheduled(stack, item_id: int) -> dict | None:
    entries = [entry for entry in await timeline(stack.http, item_id) if entry["kind"] == "rule_scheduled"]
    return entries[0] if entries else None


async def test_rule_of_a_stage_the_item_left_never_fires(ts_stack):
    stack = ts_stack
    flow, manager, boss = await _setup(
        stack, [{"name": "late", "type": "notify_supervisor", "delay": "24h", "settings": {"text": "late"}}]
    )
    item = await deal(stack.http, flow["id"], manager["id"])
    await stack.env.sleep(timedelta(hours=2))
    ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "WORK"}))

    await eventually(lambda: _kind(stack, item["id"], "rule_cancelled"))
    await stack.env.sleep(timedelta(days=2))
    entries = await timeline(stack.http, item["id"])
    assert kinds(entries, "late") == ["rule_scheduled", "rule_cancelled"]
    assert _notifications(stack, boss["id"]) == []
    pending = ok(await stack.http.get(f"/deals/{item['id']}/pending"))
    assert pending == []


async def _kind(stack, item_id: int, kind: str) -> list[dict]:
    return [entry for entry in await timeline(stack.http, item_id) if entry["kind"] == kind]


async def test_condition_false_at_due_time_skips_the_rule(ts_stack):
    stack = ts_stack
    flow, manager, boss = await _setup(
        stack,
        [{"name": "big", "type": "notify_supervisor", "delay": "1h",
          "condition": {"all": [{"field": "Deal.Amount", "op": ">", "value": 1000}]},
          "settings": {"text": "big deal"}}],
    )
    item = await deal(stack.http, flow["id"], manager["id"], amount=5000)
    with stack.session() as session:
        from models.tables import Item

        row = session.get(Item, item["id"])
        row.amount = 300
        session.add(row)
    await stack.env.sleep(timedelta(hours=2))
    skipped = await eventually(lambda: _kind(stack, item["id"], "rule_skipped"))
    assert "Deal.Amount" in skipped[0]["text"]
    assert _notifications(stack, boss["id"]) == []
