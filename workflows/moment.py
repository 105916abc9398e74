"""One due moment: the database-only rules stage entries handed to it (engine generation 4) run when it comes.

It sleeps until the moment, runs the rules handed to it in batches (each batch one activity and one transaction, each
rule keyed by its entry and recorded on its own), then tells each entry its rule's outcome, and ends once none is
left. Its batches are regular activities, so that each of its workflow tasks stays short however many rules it runs. Its history tells the moment's story: how many rules each batch ran; each entry's history
tells its rule's.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.entry import STEP_RETRY
    from workflows.types import (
        DUE_WORKFLOW,
        FINISH_DUE_MOMENT,
        RUN_DUE_RULES,
        TELL_DUE_OUTCOMES,
        DueBatch,
        DueMoment,
    )

BATCH = 100
"""Rules run in one transaction."""
BATCH_TIMEOUT = timedelta(seconds=30)
"""A batch whose worker was lost is run again after this long (it takes well under a second)."""


@workflow.defn(name=DUE_WORKFLOW)
class DueMomentWorkflow:
    @workflow.run
    async def run(self, moment: DueMoment) -> int:
        wait = (moment.due - workflow.now()).total_seconds()
        if wait > 0:
            await workflow.sleep(wait, summary=f"until {moment.key}")
        ran = 0
        batch = 0
        while True:
            batch += 1
            count = await workflow.execute_activity(
                RUN_DUE_RULES,
                DueBatch(key=moment.key, at=workflow.now(), token=f"{workflow.info().run_id}/{batch}", limit=BATCH),
                result_type=int, start_to_close_timeout=BATCH_TIMEOUT, retry_policy=STEP_RETRY,
                summary=f"batch {batch}",
            )
            ran += count
            if count:
                if workflow.info().is_continue_as_new_suggested():
                    await self._tell(moment)
                    workflow.continue_as_new(moment)
                continue
            if not await self._tell(moment):
                break
        await workflow.execute_local_activity(
            FINISH_DUE_MOMENT, moment, start_to_close_timeout=BATCH_TIMEOUT, retry_policy=STEP_RETRY,
            summary="forget the rules it ran",
        )
        return ran

    @staticmethod
    async def _tell(moment: DueMoment) -> int:
        """Every outcome not yet told, to its entry; how many."""
        told = 0
        while True:
            count = await workflow.execute_activity(
                TELL_DUE_OUTCOMES, moment.key, result_type=int, start_to_close_timeout=BATCH_TIMEOUT,
                retry_policy=STEP_RETRY, summary="tell the entries",
            )
            told += count
            if not count:
                return told
