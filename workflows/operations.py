"""Operations over many items at once, each a workflow of its own so that it finishes whatever process dies.

`ApplyVersionWorkflow` takes a saved automation version to the stage entries of its pipeline that were already
waiting when it was saved with `in_flight=apply`: it asks for the next entries still running an older version (a
step that marks them as taken in the same transaction), tells each of them the version's rules of its stage by a
signal, and goes on until none is left. Signals are durable once the server has them; an entry that finished in
the meantime has nothing to follow. Every few batches it continues as new, so its history stays short.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from workflows.types import (
        APPLY_VERSION,
        APPLY_WORKFLOW,
        ENTRIES_TO_APPLY,
        ApplyBatch,
        ApplyInput,
        VersionChange,
        entry_workflow_id,
    )

BATCHES_PER_RUN = 10
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


@workflow.defn(name=APPLY_WORKFLOW)
class ApplyVersionWorkflow:
    @workflow.run
    async def run(self, order: ApplyInput) -> int:
        """The number of entries told, over every run."""
        for _ in range(BATCHES_PER_RUN):
            batch: ApplyBatch = await workflow.execute_activity(
                ENTRIES_TO_APPLY, order, result_type=ApplyBatch, start_to_close_timeout=timedelta(seconds=60),
                retry_policy=STEP_RETRY, summary=f"entries still on an older version than {order.version}",
            )
            if not batch.entries:
                return order.reached
            for entry in batch.entries:
                change = VersionChange(
                    version=order.version, rules=batch.rules.get(entry.stage, []),
                    search_attributes=order.search_attributes,
                )
                handle = workflow.get_external_workflow_handle(
                    entry_workflow_id(entry.entity, entry.item_id, entry.entry_no)
                )
                try:
                    await handle.signal(APPLY_VERSION, change)
                except FailureError as error:  # the entry finished meanwhile: nothing waits there any more
                    workflow.logger.info("entry of %s %s not told: %s", entry.entity, entry.item_id, error)
                order.reached += 1
        workflow.continue_as_new(order)
