"""One due moment: the rules stage entries handed to it (engine generation 4: database-only ones; 5: also those that
reach the outside) run when it comes.

It sleeps until the moment, runs the database-only rules handed to it in batches (each batch one activity and one
transaction, each rule keyed by its entry and recorded on its own), then those that reach the outside (each batch one
heartbeating activity running its rules side by side, each within its own timeout), then tells each entry its rule's
outcome, and ends once none is left. Its batches are regular activities, so that each of its workflow tasks stays
short however many rules it runs. Its history tells the moment's story: how many rules each batch ran; each entry's
history tells its rule's.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.entry import STEP_RETRY
    from workflows.types import (
        DUE_WORKFLOW,
        FINISH_DUE_MOMENT,
        RUN_DUE_OUTSIDE_RULES,
        RUN_DUE_RULES,
        TELL_DUE_OUTCOMES,
        DueBatch,
        DueMoment,
    )

BATCH = 100
"""Rules run in one transaction."""
BATCH_TIMEOUT = timedelta(seconds=30)
"""A batch whose worker was lost is run again after this long (it takes well under a second)."""
OUTSIDE_BATCH = 50
"""Rules that reach the outside run side by side in one call."""
OUTSIDE_TIMEOUT = timedelta(minutes=10)
"""The longest call of rules that reach the outside (each rule keeps its own timeout within it); a lost worker's
call is run again once its heartbeats stop."""
# From this version on, the moment also runs the rules that reach the outside handed to it (engine generation 5).
OUTSIDE_RULES = "outside-rules-at-due-moments"


@workflow.defn(name=DUE_WORKFLOW)
class DueMomentWorkflow:
    @workflow.run
    async def run(self, moment: DueMoment) -> int:
        outside = workflow.patched(OUTSIDE_RULES)
        wait = (moment.due - workflow.now()).total_seconds()
        if wait > 0:
            await workflow.sleep(wait, summary=f"until {moment.key}")
        ran = 0
        batch = 0
        local_left = True
        while True:
            batch += 1
            token = f"{workflow.info().run_id}/{batch}"
            count = 0
            if local_left or not outside:
                count = await workflow.execute_activity(
                    RUN_DUE_RULES, DueBatch(key=moment.key, at=workflow.now(), token=token, limit=BATCH),
                    result_type=int, start_to_close_timeout=BATCH_TIMEOUT, retry_policy=STEP_RETRY,
                    summary=f"batch {batch}",
                )
                local_left = bool(count)
            if not count and outside:
                count = await workflow.execute_activity(
                    RUN_DUE_OUTSIDE_RULES,
                    DueBatch(key=moment.key, at=workflow.now(), token=f"{token}/outside", limit=OUTSIDE_BATCH),
                    result_type=int, start_to_close_timeout=OUTSIDE_TIMEOUT, retry_policy=STEP_RETRY,
                    heartbeat_timeout=timedelta(seconds=moment.heartbeat_seconds) if moment.heartbeat_seconds else None,
                    summary=f"batch {batch}: rules that reach the outside",
                )
                if count:
                    # each such batch takes as long as its slowest call: its entries hear of it before the next
                    await self._tell(moment)
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
