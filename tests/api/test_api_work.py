"""Work on items: tasks (status changes are trigger events), activities, notifications, messages."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from models.tables import CrmActivity, Message, Notification, Task
from tests.api.support import assert_problem, crm, insert, stage_of, total, wait_for_stage
from tests.crm import deal, ok, pipeline, timeline, user


async def test_a_task_status_change_is_recorded_and_moves_the_item_by_trigger(stack):
    flow, manager = await crm(stack, ["NEW", "READY"], automation={
        "READY": {"triggers": [{"name": "done", "type": "task_status",
                                "filter": {"status": "completed", "title_contains": ["invoice"]}}]},
    })
    observer = await user(stack.http, "Observer")
    item = await deal(stack.member, flow["id"], manager["id"])
    task, other = insert(
        stack,
        Task(item_id=item["id"], title="Prepare the invoice", responsible_id=manager["id"], rule_name="make",
             pipeline_id=flow["id"], stage="NEW"),
        Task(item_id=None, title="Unlinked"),
    )

    started = ok(await stack.member.patch(f"/tasks/{task.id}", json={"status": "in_progress", "observers": [observer["id"]]}))
    assert (started["status"], started["observers"], started["completed_at"]) == ("in_progress", [observer["id"]], None)
    await asyncio.sleep(0.3)
    assert await stage_of(stack, "deal", item["id"]) == "NEW"

    done = ok(await stack.member.patch(f"/tasks/{task.id}", json={"status": "completed"}))
    assert done["completed_at"] is not None
    await wait_for_stage(stack, "deal", item["id"], "READY")
    ok(await stack.member.patch(f"/tasks/{task.id}", json={"status": "completed"}))
    entries = await timeline(stack.member, item["id"], kind="task_status")
    assert [(entry["data"]["from"], entry["data"]["status"]) for entry in entries] == [
        ("pending", "in_progress"), ("in_progress", "completed")
    ]
    assert len(await timeline(stack.member, item["id"], kind="stage_changed")) == 2
    assert ok(await stack.member.patch(f"/tasks/{other.id}", json={"status": "deferred"}))["status"] == "deferred"


async def test_tasks_are_listed_by_item_and_status_and_bad_changes_are_refused(stack):
    flow, manager = await crm(stack, ["NEW"])
    leads = await pipeline(stack.http, ["INCOMING"], entity="lead", name="Leads")
    item = await deal(stack.member, flow["id"], manager["id"])
    lead = await deal(stack.member, leads["id"], manager["id"], entity="lead")
    first, second, third = insert(
        stack,
        Task(item_id=item["id"], title="Call", status="completed"),
        Task(item_id=item["id"], title="Write"),
        Task(item_id=lead["id"], title="Qualify"),
    )
    assert [row["id"] for row in ok(await stack.member.get("/tasks", params={"deal_id": item["id"]}))] == [first.id, second.id]
    assert [row["id"] for row in ok(await stack.member.get("/tasks", params={"lead_id": lead["id"]}))] == [third.id]
    assert await total(stack.member, "/tasks", lead_id=item["id"]) == 0
    assert await total(stack.member, "/tasks", deal_id=item["id"], status="pending") == 1
    assert await total(stack.member, "/tasks") == 3
    assert ok(await stack.member.get(f"/tasks/{second.id}"))["title"] == "Write"
    assert_problem(await stack.member.get("/tasks", params={"deal_id": 1, "lead_id": 2}), HTTPStatus.UNPROCESSABLE_ENTITY, "query", "lead_id")
    assert_problem(await stack.member.get("/tasks", params={"status": "done"}), HTTPStatus.UNPROCESSABLE_ENTITY, "query", "status")

    for body, loc in (
        ({"status": "done"}, ("body", "status")),
        ({"status": None}, ("body", "status")),
        ({"observers": [999]}, ("body", "observers", 0)),
        ({"title": ""}, ("body", "title")),
        ({"responsible_id": manager["id"]}, ("body", "responsible_id")),
    ):
        assert_problem(await stack.member.patch(f"/tasks/{second.id}", json=body), HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
    unchanged = ok(await stack.member.get(f"/tasks/{second.id}"))
    assert (unchanged["status"], unchanged["title"], unchanged["observers"]) == ("pending", "Write", [])
    assert await timeline(stack.member, item["id"], kind="task_status") == []
    assert (await stack.member.get("/tasks/999")).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.member.patch("/tasks/999", json={"status": "completed"})).status_code == HTTPStatus.NOT_FOUND


async def test_activities_are_listed_and_completed(stack):
    flow, manager = await crm(stack, ["NEW"])
    item = await deal(stack.member, flow["id"], manager["id"])
    call, meeting = insert(
        stack,
        CrmActivity(item_id=item["id"], kind="call", description="Call the client", responsible_id=manager["id"]),
        CrmActivity(item_id=item["id"], kind="meeting", description="Show the sofa"),
    )
    listed = ok(await stack.member.get("/activities", params={"deal_id": item["id"]}))
    assert [(row["kind"], row["completed"]) for row in listed] == [("call", False), ("meeting", False)]
    done = ok(await stack.member.patch(f"/activities/{call.id}", json={"completed": True}))
    assert done["completed"] is True and done["completed_at"] is not None
    assert [row["id"] for row in ok(await stack.member.get("/activities", params={"completed": False}))] == [meeting.id]
    reopened = ok(await stack.member.patch(f"/activities/{call.id}", json={"completed": False}))
    assert reopened["completed_at"] is None

    for body, loc in (({}, ("body", "completed")), ({"completed": "maybe"}, ("body", "completed")),
                      ({"completed": True, "kind": "x"}, ("body", "kind"))):
        assert_problem(await stack.member.patch(f"/activities/{meeting.id}", json=body), HTTPStatus.UNPROCESSABLE_ENTITY, *loc)
    assert ok(await stack.member.get(f"/activities/{meeting.id}"))["completed"] is False
    assert await total(stack.member, "/activities", lead_id=item["id"]) == 0
    assert (await stack.member.get("/activities/999")).status_code == HTTPStatus.NOT_FOUND
    assert (await stack.member.patch("/activities/999", json={"completed": True})).status_code == HTTPStatus.NOT_FOUND


async def test_notifications_are_listed_per_user_and_marked_read(stack):
    flow, manager = await crm(stack, ["NEW"])
    courier = await user(stack.http, "Courier")
    item = await deal(stack.member, flow["id"], manager["id"])
    for_manager, for_courier = insert(
        stack,
        Notification(user_id=manager["id"], item_id=item["id"], text="Sofa waits"),
        Notification(user_id=courier["id"], item_id=item["id"], text="Deliver the sofa"),
    )
    assert [row["text"] for row in ok(await stack.member.get("/notifications", params={"user_id": courier["id"]}))] == [
        "Deliver the sofa"
    ]
    assert ok(await stack.member.patch(f"/notifications/{for_courier.id}", json={"read": True}))["read"] is True
    assert [row["id"] for row in ok(await stack.member.get("/notifications", params={"read": False}))] == [for_manager.id]
    assert await total(stack.member, "/notifications", item_id=item["id"]) == 2
    assert_problem(await stack.member.patch(f"/notifications/{for_manager.id}", json={"read": "yes please"}), HTTPStatus.UNPROCESSABLE_ENTITY,
                   "body", "read")
    assert_problem(await stack.member.get("/notifications", params={"user_id": "me"}), HTTPStatus.UNPROCESSABLE_ENTITY, "query", "user_id")
    assert (await stack.member.patch("/notifications/999", json={"read": True})).status_code == HTTPStatus.NOT_FOUND
    assert await total(stack.member, "/notifications", read=False) == 1


async def test_messages_are_listed_with_their_status_and_without_tracking_tokens(stack):
    flow, manager = await crm(stack, ["NEW"])
    item = await deal(stack.member, flow["id"], manager["id"])
    email, sms = insert(
        stack,
        Message(item_id=item["id"], channel="email", to="anna@example.com", subject="Your invoice", body="Hi",
                status="sent", tracking_token="secret-tracking-token", links=["https://shop.example.com"]),
        Message(item_id=item["id"], channel="sms", to="+48600100200", body="We will call", status="failed",
                error="provider refused"),
    )
    listed = ok(await stack.member.get("/messages", params={"deal_id": item["id"]}))
    assert [(row["channel"], row["status"]) for row in listed] == [("email", "sent"), ("sms", "failed")]
    assert "secret-tracking-token" not in str(listed)
    assert [row["id"] for row in ok(await stack.member.get("/messages", params={"channel": "sms"}))] == [sms.id]
    assert await total(stack.member, "/messages", status="sent") == 1
    assert ok(await stack.member.get(f"/messages/{sms.id}"))["error"] == "provider refused"
    assert_problem(await stack.member.get("/messages", params={"channel": "fax"}), HTTPStatus.UNPROCESSABLE_ENTITY, "query", "channel")
    assert (await stack.member.get("/messages/999")).status_code == HTTPStatus.NOT_FOUND
    assert await total(stack.member, "/messages", lead_id=item["id"]) == 0
