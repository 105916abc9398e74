"""Rules that reach the outside and are due at an entry's start run side by side in one `rules.outside_together`
call; each is keyed, recorded and failing on its own, and one that would be retried is retried alone (the call's
activity itself: tests/engine/test_rules_together.py)."""

from __future__ import annotations

import base64
import hashlib
import json

from tests.crm import ok
from tests.custom.endpoint import endpoint
from tests.custom.flows import comments, finished, rule_entries, shop_deal
from workflows.types import RULES_OUTSIDE_TOGETHER


def _hook(name: str, url: str) -> dict:
    return {"name": name, "type": "webhook", "settings": {"url": url, "returns": ["order_no"]}}


async def test_outside_rules_due_together_share_one_call_and_each_fails_or_is_retried_alone(stack):
    async with endpoint(default=(200, {"order_no": "A-1"})) as steady, \
            endpoint(replies=[(503, {"error": "busy"})], default=(200, {"order_no": "B-2"})) as busy, \
            endpoint(default=(422, {"error": "unknown customer"})) as refusing:
        item = await shop_deal(stack.http, {"NEW": {"rules": [
            _hook("steady", steady.url()),
            _hook("busy", busy.url()),
            {"name": "after busy", "type": "add_timeline_entry", "start": "after_previous",
             "settings": {"text": "Order {{Rule.busy.order_no}}"}},
            _hook("refusing", refusing.url()),
        ]}})

        assert (await finished(stack.http, item["id"], "steady"))["kind"] == "rule_done"
        assert (await finished(stack.http, item["id"], "busy"))["kind"] == "rule_done"
        failed = await finished(stack.http, item["id"], "refusing")
        assert (await finished(stack.http, item["id"], "after busy"))["kind"] == "rule_done"

    assert failed["kind"] == "rule_failed"
    assert "422" in failed["text"] and "unknown customer" in failed["text"]
    assert await comments(stack.http, item["id"]) == ["Order B-2"]
    key = lambda rule: hashlib.sha256(f"deal-{item['id']}/entry-1/{rule}".encode()).hexdigest()  # noqa: E731
    assert [request.headers["idempotency-key"] for request in steady.requests] == [key("steady")]
    assert [request.headers["idempotency-key"] for request in busy.requests] == [key("busy")] * 2
    assert [request.headers["idempotency-key"] for request in refusing.requests] == [key("refusing")]
    for rule in ("steady", "busy"):
        kinds = [entry["kind"] for entry in await rule_entries(stack.http, item["id"], rule)]
        assert kinds == ["rule_scheduled", "rule_done"], (rule, kinds)

    history = await stack.client.get_workflow_handle(f"deal-{item['id']}/entry-1").fetch_history()
    assert activities(json.loads(history.to_json())) == [
        (RULES_OUTSIDE_TOGETHER, "steady (webhook), busy (webhook), refusing (webhook)"),
        ("rule.webhook", "busy (webhook)"),
    ]
    assert not ok(await stack.http.get(f"/deals/{item['id']}/pending"))


def activities(history: dict) -> list[tuple[str, str]]:
    """(activity type, summary as the Temporal UI shows it) of each regular activity the workflow scheduled."""
    found = []
    for event in history["events"]:
        scheduled = event.get("activityTaskScheduledEventAttributes")
        if scheduled is None:
            continue
        summary = json.loads(base64.b64decode(event["userMetadata"]["summary"]["data"]))
        found.append((scheduled["activityType"]["name"], summary))
    return found


async def test_an_entry_begun_before_generation_2_runs_one_activity_per_rule(stack):
    """The same entry's input as a release before 0.7.0 gave it (no `engine`): its rules run as they ran then."""
    async with endpoint() as first, endpoint() as second:
        item = await shop_deal(stack.http, {"NEW": {"rules": [_hook("first", first.url()),
                                                               _hook("second", second.url())]}})
        for rule in ("first", "second"):
            assert (await finished(stack.http, item["id"], rule))["kind"] == "rule_done"
        history = await stack.client.get_workflow_handle(f"deal-{item['id']}/entry-1").fetch_history()
        entry = json.loads(history.events[0].workflow_execution_started_event_attributes.input.payloads[0].data)
        assert entry.pop("engine") >= 2
        older = await stack.client.start_workflow(
            "StageEntryWorkflow", entry, id=f"deal-{item['id']}/entry-1-as-before",
            task_queue=stack.settings.temporal_task_queue,
        )
        assert await older.result() == {"first": "done", "second": "done"}

    assert activities(json.loads((await older.fetch_history()).to_json())) == [
        ("rule.webhook", "first (webhook)"), ("rule.webhook", "second (webhook)"),
    ]
    assert (len(first.requests), len(second.requests)) == (2, 2), "once for each entry, under its own key"
