"""Delays counted from a date field follow the field: a changed close date moves the rule's due time (earlier or
later), an empty one makes the rule wait for a value, a cleared one puts it back to waiting; on the
time-skipping server, six months in milliseconds."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlmodel import select

from models.tables import Notification
from tests.crm import automate, deal, eventually, ok, pipeline, timeline, user

WARSAW = ZoneInfo("Europe/Warsaw")
REMIND = {"name": "remind", "type": "notify_employee", "delay": {"field": "close_date", "offset": "-1d"},
          "settings": {"user_ids": ["{{Deal.Responsible.Id}}"], "text": "{{Deal.Title}} closes tomorrow"}}


async def _shop(stack) -> tuple[dict, dict]:
    manager = await user(stack.http, "Marek Manager")
    flow = await pipeline(stack.http, ["NEW", "WON"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [REMIND]}})
    return flow, manager


def _reminders(stack, user_id: int) -> list[Notification]:
    with stack.session() as session:
        return list(session.exec(select(Notification).where(Notification.user_id == user_id)))


async def _entries(stack, item_id: int, kind: str, count: int) -> list[dict]:
    async def enough():
        found = await timeline(stack.http, item_id, kind=kind)
        return found if len(found) >= count else None

    return await eventually(enough)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)


async def _now(stack) -> datetime:
    return await stack.env.get_current_time()


async def test_a_close_date_moved_earlier_and_later_moves_the_rule_with_it(ts_stack):
    stack = ts_stack
    flow, manager = await _shop(stack)
    start = await _now(stack)
    six_months = (start + timedelta(days=182)).date()
    item = await deal(stack.http, flow["id"], manager["id"], close_date=six_months.isoformat())
    [scheduled] = await _entries(stack, item["id"], "rule_scheduled", 1)
    assert datetime.fromisoformat(scheduled["data"]["due"]) == _midnight(six_months - timedelta(days=1))

    earlier = (start + timedelta(days=30)).date()
    ok(await stack.http.patch(f"/deals/{item['id']}", json={"close_date": earlier.isoformat()}))
    [moved] = await _entries(stack, item["id"], "rule_rescheduled", 1)
    assert datetime.fromisoformat(moved["data"]["from"]) == _midnight(six_months - timedelta(days=1))
    assert datetime.fromisoformat(moved["data"]["to"]) == _midnight(earlier - timedelta(days=1))

    later = (start + timedelta(days=60)).date()
    ok(await stack.http.patch(f"/deals/{item['id']}", json={"close_date": later.isoformat()}))
    moved = (await _entries(stack, item["id"], "rule_rescheduled", 2))[-1]
    assert datetime.fromisoformat(moved["data"]["to"]) == _midnight(later - timedelta(days=1))

    await stack.env.sleep(_midnight(later - timedelta(days=1)) - await _now(stack) - timedelta(hours=1))
    assert _reminders(stack, manager["id"]) == []
    await stack.env.sleep(timedelta(hours=2))
    [note] = await eventually(lambda: _reminders(stack, manager["id"]))
    assert note.text == "Sofa for Anna closes tomorrow"
    [done] = await _entries(stack, item["id"], "rule_done", 1)
    assert datetime.fromisoformat(done["at"]).date() == later - timedelta(days=1)
    await stack.env.sleep(timedelta(days=200))
    assert len(_reminders(stack, manager["id"])) == 1


async def test_a_rule_waits_for_an_empty_date_and_again_when_it_is_cleared(ts_stack):
    stack = ts_stack
    flow, manager = await _shop(stack)
    item = await deal(stack.http, flow["id"], manager["id"])
    [waiting] = await _entries(stack, item["id"], "rule_scheduled", 1)
    assert waiting["data"]["waiting_for"] == "close_date" and "due" not in waiting["data"]
    await stack.env.sleep(timedelta(days=90))
    assert _reminders(stack, manager["id"]) == []

    first = (await _now(stack) + timedelta(days=10)).date()
    ok(await stack.http.patch(f"/deals/{item['id']}", json={"close_date": first.isoformat()}))
    [given] = await _entries(stack, item["id"], "rule_rescheduled", 1)
    assert given["data"]["from"] is None and given["data"]["to"] is not None
    ok(await stack.http.patch(f"/deals/{item['id']}", json={"close_date": None}))
    cleared = (await _entries(stack, item["id"], "rule_rescheduled", 2))[-1]
    assert cleared["data"]["to"] is None and "waits for close_date again" in cleared["text"]
    await stack.env.sleep(timedelta(days=30))
    assert _reminders(stack, manager["id"]) == []

    final = (await _now(stack) + timedelta(days=5)).date()
    ok(await stack.http.patch(f"/deals/{item['id']}", json={"close_date": final.isoformat()}))
    await _entries(stack, item["id"], "rule_rescheduled", 3)
    await stack.env.sleep(timedelta(days=5))
    [note] = await eventually(lambda: _reminders(stack, manager["id"]))
    [done] = await _entries(stack, item["id"], "rule_done", 1)
    assert datetime.fromisoformat(done["at"]).date() == final - timedelta(days=1)


async def test_pending_shows_the_new_due_and_the_field_a_rule_waits_for(stack):
    flow, manager = await _shop(stack)
    item = await deal(stack.http, flow["id"], manager["id"])

    async def pending() -> dict | None:
        rules = ok(await stack.http.get(f"/deals/{item['id']}/pending"))
        return rules[0] if rules and rules[0]["state"] != "waiting_delay" or rules and rules[0]["due"] else None

    waiting = await eventually(pending)
    assert (waiting["state"], waiting["waiting_for"], waiting["due"]) == ("waiting_field", "close_date", None)
    close = (datetime.now(timezone.utc) + timedelta(days=40)).date()
    ok(await stack.http.patch(f"/deals/{item['id']}", json={"close_date": close.isoformat()}))

    async def scheduled() -> dict | None:
        rules = ok(await stack.http.get(f"/deals/{item['id']}/pending"))
        return rules[0] if rules and rules[0]["due"] else None

    due = await eventually(scheduled)
    assert due["state"] == "waiting_delay" and due["waiting_for"] is None
    assert datetime.fromisoformat(due["due"]) == _midnight(close - timedelta(days=1))
    ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "WON"}))
    cancelled = await _entries(stack, item["id"], "rule_cancelled", 1)
    assert [entry["rule_name"] for entry in cancelled] == ["remind"]


async def test_an_update_fields_rule_that_sets_the_date_schedules_the_rule_that_waits_for_it(ts_stack):
    stack = ts_stack
    manager = await user(stack.http, "Marek Manager")
    flow = await pipeline(stack.http, ["NEW", "WON"])
    close = (await _now(stack) + timedelta(days=20)).date()
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        REMIND,
        {"name": "set date", "type": "update_fields", "delay": "1d", "settings": {"fields": {"close_date": close.isoformat()}}},
    ]}})
    item = await deal(stack.http, flow["id"], manager["id"])
    await _entries(stack, item["id"], "rule_scheduled", 2)
    await stack.env.sleep(timedelta(days=2))
    [given] = await _entries(stack, item["id"], "rule_rescheduled", 1)
    assert datetime.fromisoformat(given["data"]["to"]) == _midnight(close - timedelta(days=1))
    await stack.env.sleep(timedelta(days=20))
    await eventually(lambda: _reminders(stack, manager["id"]))


async def test_an_after_previous_rule_takes_the_date_when_scheduled_and_keeps_its_clock_time_when_moved(ts_stack):
    stack = ts_stack
    manager = await user(stack.http, "Marek Manager")
    flow = await pipeline(stack.http, ["NEW", "WON"])
    ok(await stack.http.put("/settings/calendar", json={"timezone": "Europe/Warsaw"}))
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "first", "type": "add_timeline_entry", "delay": "2d", "settings": {"text": "first"}},
        {**REMIND, "start": "after_previous", "delay": {"field": "close_date", "offset": "-1d", "at": "10:00"}},
    ]}})
    start = await _now(stack)
    item = await deal(stack.http, flow["id"], manager["id"], close_date=(start + timedelta(days=10)).date().isoformat())
    moved_close = (start + timedelta(days=20)).date()
    ok(await stack.http.patch(f"/deals/{item['id']}", json={"close_date": moved_close.isoformat()}))
    await stack.env.sleep(timedelta(days=2, hours=1))
    scheduled = (await _entries(stack, item["id"], "rule_scheduled", 2))[-1]
    due = datetime.fromisoformat(scheduled["data"]["due"])
    assert due.astimezone(WARSAW).date() == moved_close - timedelta(days=1)
    assert due.astimezone(WARSAW).time() == time(10, 0)

    later_close = moved_close + timedelta(days=7)
    ok(await stack.http.patch(f"/deals/{item['id']}", json={"close_date": later_close.isoformat()}))
    [moved] = await _entries(stack, item["id"], "rule_rescheduled", 1)
    to = datetime.fromisoformat(moved["data"]["to"]).astimezone(WARSAW)
    assert (to.date(), to.time()) == (later_close - timedelta(days=1), time(10, 0))
    await stack.env.sleep(datetime.fromisoformat(moved["data"]["to"]) - await _now(stack) + timedelta(minutes=1))
    await eventually(lambda: _reminders(stack, manager["id"]))
