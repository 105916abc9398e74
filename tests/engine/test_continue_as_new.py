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


async def test_a_move_refused_while_the_workflow_continues_as_new_is_sent_again_as_a_new_call(tmp_path):
    """The server refuses an update that meets a continue-as-new; the move goes again with the same update id, and
    each call has a start operation of its own (the SDK uses one only once)."""
    from types import SimpleNamespace

    from temporalio.service import RPCError, RPCStatusCode

    from models.settings import get_settings
    from workflows.client import move_item
    from workflows.types import MoveResult

    calls = []

    class Refusing:
        async def execute_update_with_start_workflow(self, update, request, *, id, start_workflow_operation,
                                                     result_type):
            calls.append((id, request.request_id, start_workflow_operation))
            if len(calls) == 1:
                raise RPCError("unexpected workflow task failure", RPCStatusCode.UNAVAILABLE, b"")
            return MoveResult(moved=True, stage=request.stage, entry_no=2)

    item = SimpleNamespace(id=5, entity_type="deal", pipeline_id=1, title="Sofa", stage="NEW", entry_no=1)
    moved = await move_item(Refusing(), get_settings(data_dir=tmp_path), item, "WON", as_user_id=None, request_id="r7")
    assert (moved.moved, moved.stage) == (True, "WON")
    assert [(update_id, request_id) for update_id, request_id, _ in calls] == [("move-r7", "move-r7")] * 2
    assert calls[0][2] is not calls[1][2]
