"""A deliberately incompatible version of the stage-entry workflow, used to prove replay catches it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.types import BEGIN_ENTRY, ENTRY_WORKFLOW, EntryInput


@workflow.defn(name=ENTRY_WORKFLOW)
class ReorderedEntryWorkflow:
    @workflow.run
    async def run(self, entry: EntryInput) -> dict:
        await workflow.sleep(timedelta(seconds=1))
        await workflow.execute_activity(BEGIN_ENTRY, entry, start_to_close_timeout=timedelta(seconds=30))
        return {}
