"""An item's workflow continues as new before its history grows large; nothing pending is lost."""

from __future__ import annotations

from contextlib import AsyncExitStack

from sqlmodel import select

from models.tables import TimelineEntry
from tests.crm import automate, deal, eventually, ok, pipeline, user
from tests.stacks import open_stack, stack_settings
from workflows.item import ItemWorkflow


async def test_item_workflow_continues_as_new_and_keeps_its_entries_running(dev_env, tmp_path):
    async with AsyncExitStack() as exit_stack:
        stack = await open_stack(exit_stack, dev_env, stack_settings(tmp_path, item_history_limit=60))
        manager = await user(stack.http, "Manager")
        flow = await pipeline(stack.http, ["NEW", "WORK", "DONE"])
        await automate(stack.http, flow["id"], {
            "DONE": {"rules": [{"name": "later", "type": "add_timeline_entry", "delay": "3s",
                                "settings": {"text": "still here after {{Deal.Stage}}"}}]},
        })
        item = await deal(stack.http, flow["id"], manager["id"])
        for stage in ["WORK", "NEW"] * 6 + ["DONE"]:
            ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": stage}))

        handle = stack.client.get_workflow_handle(f"deal-{item['id']}")
        async def runs() -> list:
            found = [run async for run in stack.client.list_workflows(f"WorkflowId = 'deal-{item['id']}'")]
            return found if len(found) >= 2 else []

        await eventually(runs, timeout=10)
        assert (await handle.query(ItemWorkflow.current)).entry_no == 14

        def comment() -> list[TimelineEntry]:
            with stack.session() as session:
                return list(session.exec(select(TimelineEntry).where(
                    TimelineEntry.item_id == item["id"], TimelineEntry.kind == "comment")))

        entries = await eventually(comment, timeout=30)
        assert [entry.text for entry in entries] == ["still here after DONE"]
        ok(await stack.http.post(f"/deals/{item['id']}/move", json={"stage": "WORK"}))
        assert ok(await stack.http.get(f"/deals/{item['id']}"))["stage"] == "WORK"
