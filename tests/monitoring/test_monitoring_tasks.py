"""Create task, complete tasks, and the task status trigger."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from models.tables import Effect
from tests.crm import automate, deal, eventually, ok, pipeline, timeline
from tests.monitoring.monitoring_flows import finished, rerun, shop, stage_of, tasks
from workflows.types import entry_workflow_id


async def test_create_task_fills_in_the_item_and_its_deadline_forms(stack):
    people = await shop(stack.http)
    boss, manager, courier = (people[name]["id"] for name in ("boss", "manager", "courier"))
    flow = await pipeline(stack.http, ["NEW", "WON"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "order", "type": "create_task", "settings": {
            "title": "Prepare the order for {{Deal.Contact.Name}}",
            "description": "Deal {{Deal.Title}}, amount {{Deal.Amount}}, colour {{Deal.Fields.colour}}",
            "responsible_id": courier, "deadline": "+3d", "observers": [boss, "{{Deal.Responsible.Id}}"],
            "time_tracking": True}},
        {"name": "remind", "type": "create_task", "settings": {
            "title": "Remind {{Deal.Contact.Name}}", "deadline": {"field": "close_date", "offset": "-1d", "at": "10:00"}}},
        {"name": "fixed", "type": "create_task", "settings": {"title": "Inventory", "deadline": "2031-05-20T15:30"}},
        {"name": "log", "type": "add_timeline_entry", "settings": {
            "text": "Task {{Rule.order.task_id}} “{{Rule.order.title}}” due {{Rule.order.deadline}}"}},
    ]}})
    contact = ok(await stack.http.post("/contacts", json={"name": "Anna Nowak"}), 201)
    item = await deal(stack.http, flow["id"], manager, title="Sofa", amount=1500, contact_id=contact["id"],
                      close_date="2030-03-15", fields={"colour": "green"})

    done = await finished(stack.http, item["id"], "log")
    assert done["kind"] == "rule_done"
    order_done = await finished(stack.http, item["id"], "order")
    made = {task["rule_name"]: task for task in await tasks(stack.http, item["id"])}
    assert sorted(made) == ["fixed", "order", "remind"]

    order = made["order"]
    assert order["title"] == "Prepare the order for Anna Nowak"
    assert order["description"] == "Deal Sofa, amount 1500, colour green"
    assert (order["responsible_id"], order["observers"], order["time_tracking"]) == (courier, [boss, manager], True)
    assert (order["item_id"], order["pipeline_id"], order["stage"], order["status"]) == (item["id"], flow["id"], "NEW", "pending")
    ran_at = datetime.fromisoformat(order_done["at"])
    assert datetime.fromisoformat(order["deadline"]) == ran_at + timedelta(days=3)

    remind = made["remind"]
    assert (remind["title"], remind["responsible_id"], remind["observers"]) == ("Remind Anna Nowak", manager, [])
    assert datetime.fromisoformat(remind["deadline"]) == datetime(2030, 3, 14, 10, 0, tzinfo=timezone.utc)
    assert datetime.fromisoformat(made["fixed"]["deadline"]) == datetime(2031, 5, 20, 15, 30, tzinfo=timezone.utc)

    log = await timeline(stack.http, item["id"], kind="comment")
    assert [entry["text"] for entry in log] == [
        f"Task {order['id']} “Prepare the order for Anna Nowak” due {datetime.fromisoformat(order['deadline']).isoformat()}"
    ]


async def test_create_task_twice_with_the_same_effect_key_makes_one_task(stack):
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "WON"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "call", "type": "create_task", "settings": {"title": "Call about {{Deal.Title}}", "deadline": "+2h"}},
    ]}})
    item = await deal(stack.http, flow["id"], people["manager"]["id"], title="Sofa")
    assert (await finished(stack.http, item["id"], "call"))["kind"] == "rule_done"
    [task] = await tasks(stack.http, item["id"])

    outcome = await rerun(stack, item["id"], "call")
    assert outcome.result == {"task_id": task["id"], "title": "Call about Sofa", "deadline": outcome.result["deadline"]}
    assert datetime.fromisoformat(outcome.result["deadline"]) == datetime.fromisoformat(task["deadline"])
    assert [row["id"] for row in await tasks(stack.http, item["id"])] == [task["id"]]


async def test_a_deadline_from_an_empty_date_field_fails_the_rule_with_no_task(stack):
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "WON"])
    await automate(stack.http, flow["id"], {"NEW": {"rules": [
        {"name": "remind", "type": "create_task",
         "settings": {"title": "Remind", "deadline": {"field": "close_date", "offset": "-1d"}}},
    ]}})
    item = await deal(stack.http, flow["id"], people["manager"]["id"])

    failed = await finished(stack.http, item["id"], "remind")
    assert failed["kind"] == "rule_failed"
    assert "settings.deadline" in failed["text"] and "close_date" in failed["text"]
    assert await tasks(stack.http, item["id"]) == []


async def test_complete_tasks_completes_rule_tasks_of_the_chosen_stages_and_fires_task_triggers(stack):
    people = await shop(stack.http)
    manager = people["manager"]["id"]
    flow = await pipeline(stack.http, ["NEW", "PREPARE", "DELIVERY", "DONE", "ARCHIVE"])

    def make(name: str) -> dict:
        return {"rules": [{"name": name, "type": "create_task", "settings": {"title": f"{name} {{{{Deal.Title}}}}"}}]}

    await automate(stack.http, flow["id"], {
        "NEW": make("measure"),
        "PREPARE": make("invoice"),
        "DELIVERY": make("deliver"),
        "DONE": {"rules": [{"name": "close", "type": "complete_tasks", "settings": {"stages": ["NEW", "PREPARE"]}}]},
        "ARCHIVE": {"triggers": [{"name": "prepared", "type": "task_status",
                                  "filter": {"status": "completed", "created_by_stage": "PREPARE"}}]},
    })
    item = await deal(stack.http, flow["id"], manager, title="Sofa")
    await finished(stack.http, item["id"], "measure")
    for stage, rule in (("PREPARE", "invoice"), ("DELIVERY", "deliver")):
        ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": stage}))
        await finished(stack.http, item["id"], rule)
    ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "DONE"}))

    close = await finished(stack.http, item["id"], "close")
    assert close["kind"] == "rule_done"
    assert close["data"]["result"]["completed_count"] == 2
    status = {task["rule_name"]: task["status"] for task in await tasks(stack.http, item["id"])}
    assert status == {"measure": "completed", "invoice": "completed", "deliver": "pending"}
    await eventually(lambda: _stage_is(stack, item["id"], "ARCHIVE"))
    [change] = [entry for entry in await timeline(stack.http, item["id"], kind="stage_changed")
                if entry["data"]["to"] == "ARCHIVE"]
    assert (change["data"]["trigger"], change["data"]["event"], change["author_id"]) == ("prepared", "task_status", manager)
    recorded = await timeline(stack.http, item["id"], kind="task_status")
    assert sorted(entry["text"] for entry in recorded) == [
        "Task “invoice Sofa” is now completed (was pending) by rule close",
        "Task “measure Sofa” is now completed (was pending) by rule close",
    ]


async def _stage_is(stack, item_id: int, stage: str) -> bool:
    return await stage_of(stack.http, item_id) == stage


async def test_complete_tasks_run_again_completes_nothing_new_and_repeats_the_same_events(stack):
    people = await shop(stack.http)
    flow = await pipeline(stack.http, ["NEW", "WON", "LOST"])
    await automate(stack.http, flow["id"], {
        "NEW": {"rules": [{"name": "call", "type": "create_task", "settings": {"title": "Call"}},
                          {"name": "visit", "type": "create_task", "settings": {"title": "Visit"}}]},
        "WON": {"rules": [{"name": "close", "type": "complete_tasks", "settings": {"pipeline_id": flow["id"]}}]},
    })
    item = await deal(stack.http, flow["id"], people["manager"]["id"])
    await finished(stack.http, item["id"], "visit")
    ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "WON"}))
    first = await finished(stack.http, item["id"], "close")
    assert first["data"]["result"]["completed_count"] == 2
    with stack.session() as session:
        recorded = session.get(Effect, f"{entry_workflow_id('deal', item['id'], 2)}/close").result

    again = await rerun(stack, item["id"], "close")
    assert again.result == first["data"]["result"]
    assert sorted(event.data["title"] for event in again.events) == ["Call", "Visit"]
    assert [event.event_id for event in again.events] == [event["event_id"] for event in recorded["events"]]
    assert len({event.event_id for event in again.events}) == 2
    assert len(await timeline(stack.http, item["id"], kind="task_status")) == 2
    assert {task["status"] for task in await tasks(stack.http, item["id"])} == {"completed"}


async def test_finishing_the_invoice_task_moves_the_deal_to_send_invoice_forward_only(stack):
    people = await shop(stack.http)
    manager = people["manager"]["id"]
    flow = await pipeline(stack.http, ["NEW", "PREPARE", "SEND_INVOICE", "WON"])
    trigger = {"name": "invoice ready", "type": "task_status",
               "filter": {"status": "completed", "title_contains": ["invoice"]}}
    automation = {
        "PREPARE": {"rules": [
            {"name": "invoice", "type": "create_task", "settings": {"title": "Prepare the Invoice for {{Deal.Title}}"}},
            {"name": "call", "type": "create_task", "settings": {"title": "Call {{Deal.Title}} client"}},
        ]},
        "SEND_INVOICE": {"triggers": [trigger]},
    }
    await automate(stack.http, flow["id"], automation)
    item = await deal(stack.http, flow["id"], manager, title="Sofa")
    ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "PREPARE"}))
    await finished(stack.http, item["id"], "call")
    made = {task["rule_name"]: task for task in await tasks(stack.http, item["id"])}
    invoice, call = made["invoice"], made["call"]

    await _set_status(stack, call["id"], "completed")
    await _set_status(stack, invoice["id"], "in_progress")
    await asyncio.sleep(1.0)
    assert await stage_of(stack.http, item["id"]) == "PREPARE"

    await _set_status(stack, invoice["id"], "completed")
    await eventually(lambda: _stage_is(stack, item["id"], "SEND_INVOICE"))
    change = (await timeline(stack.http, item["id"], kind="stage_changed"))[-1]
    assert (change["data"]["trigger"], change["author_id"]) == ("invoice ready", manager)
    completed_entry = [entry for entry in await timeline(stack.http, item["id"], kind="task_status")
                       if entry["data"]["task_id"] == invoice["id"] and entry["data"]["status"] == "completed"]
    assert datetime.fromisoformat(change["at"]) >= datetime.fromisoformat(completed_entry[0]["at"])

    ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "WON"}))
    await _set_status(stack, invoice["id"], "pending")
    await _set_status(stack, invoice["id"], "completed")
    await asyncio.sleep(1.0)
    assert await stage_of(stack.http, item["id"]) == "WON"

    automation["SEND_INVOICE"]["triggers"] = [{**trigger, "allow_backwards": True}]
    await automate(stack.http, flow["id"], automation)
    await _set_status(stack, invoice["id"], "pending")
    await _set_status(stack, invoice["id"], "completed")
    await eventually(lambda: _stage_is(stack, item["id"], "SEND_INVOICE"))
    moves = [(entry["data"]["to"], entry["data"]["reason"]) for entry in await timeline(stack.http, item["id"], kind="stage_changed")]
    assert moves == [("NEW", "created"), ("PREPARE", "manual"), ("SEND_INVOICE", "trigger"), ("WON", "manual"),
                     ("SEND_INVOICE", "trigger")]


async def _set_status(stack, task_id: int, status: str) -> None:
    task = ok(await stack.http.patch(f"/tasks/{task_id}", json={"status": status}))
    assert task["status"] == status
