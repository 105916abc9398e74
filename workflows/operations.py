"""Operations over many items at once, each a workflow of its own so that it finishes whatever process dies.

`RetryFailuresWorkflow` runs again the failed rules a retry operation chose when it was asked for: a batch of at
most `rate` a second, each made ready by a step (its plan as its entry recorded it or as the automation is now, and
`rule_retried` on the timeline), run by its rule type's activity under the rule's effect key (an effect already
stored is returned, never made twice), its outcome recorded as the entry would record it, its events and moves
passed to the item's workflow. The operation's targets hold the progress, so `GET /operations/{id}` reads it from
the database.

`ApplyVersionWorkflow` takes a saved automation version to the stage entries of its pipeline that were already
waiting when it was saved with `in_flight=apply`: it asks for the next entries still running an older version (a
step that marks them as taken in the same transaction), tells each of them the version's rules of its stage by a
signal, and goes on until none is left. Signals are durable once the server has them; an entry that finished in
the meantime has nothing to follow. Every few batches it continues as new, so its history stays short.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from workflows.entry import failure_message, run_step
    from workflows.types import (
        APPLY_VERSION,
        APPLY_WORKFLOW,
        ENTRIES_TO_APPLY,
        FINISH_OPERATION,
        ITEM_EVENT,
        NEXT_RETRIES,
        PREPARE_RETRY,
        RECORD_RULE_FAILED,
        RETRY_FINISHED,
        RETRY_WORKFLOW,
        RULE_MOVE,
        ApplyBatch,
        ApplyInput,
        ItemEvent,
        RetryDone,
        RetryInput,
        RetryPrepared,
        RetryTarget,
        RuleFailure,
        RuleOutcome,
        VersionChange,
        entry_workflow_id,
        item_workflow_id,
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
                order.after_item_id = max(order.after_item_id, entry.item_id)
        workflow.continue_as_new(order)


RULES_PER_RUN = 1000
"""Rules started in one run before it continues as new."""


@workflow.defn(name=RETRY_WORKFLOW)
class RetryFailuresWorkflow:
    @workflow.run
    async def run(self, order: RetryInput) -> int:
        """The number of failed rules started again, over every run."""
        started_here = 0
        while started_here < RULES_PER_RUN:
            batch: list[RetryTarget] = await run_step(
                NEXT_RETRIES, order, result_type=list[RetryTarget], current=True,
                summary=f"the next {order.rate} failed rules of operation {order.operation_id}",
            )
            if not batch:
                await run_step(FINISH_OPERATION, order.operation_id, current=True, summary="operation finished")
                return order.started
            began = workflow.now()
            await asyncio.gather(*(self._retry(order, target) for target in batch))
            order.started += len(batch)
            started_here += len(batch)
            rest = timedelta(seconds=1) - (workflow.now() - began)
            if rest > timedelta(0):
                await workflow.sleep(rest, summary="at most the operation's rate per second")
        workflow.continue_as_new(order)

    async def _retry(self, order: RetryInput, target: RetryTarget) -> None:
        prepared: RetryPrepared = await run_step(
            PREPARE_RETRY, target, result_type=RetryPrepared, current=True,
            summary=f"{target.rule} of {target.workflow_id}",
        )
        call = prepared.call
        if call is None:
            await self._finished(RetryDone(target=target, status=prepared.status, error=prepared.reason))
            return
        rule = call.rule
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=order.retry_initial_seconds), backoff_coefficient=2.0,
            maximum_interval=timedelta(minutes=5), maximum_attempts=order.retry_max_attempts,
            non_retryable_error_types=["RuleFailed"],
        )
        beats = order.heartbeat_seconds and not prepared.local
        try:
            outcome: RuleOutcome = await workflow.execute_activity(
                rule.activity, call, result_type=RuleOutcome,
                start_to_close_timeout=timedelta(seconds=rule.timeout_seconds), retry_policy=retry,
                heartbeat_timeout=timedelta(seconds=order.heartbeat_seconds) if beats else None,
                summary=f"{rule.name} ({rule.type}) again",
            )
        except ActivityError as error:
            message = failure_message(error)
            await run_step(RECORD_RULE_FAILED, RuleFailure(
                item_id=call.item_id, entity=call.entity, workflow_id=call.workflow_id, entry_no=call.entry_no,
                rule=rule.name, rule_type=rule.type, error=message, at=workflow.now(), version=rule.version,
            ), current=True, summary=f"{rule.name} failed again")
            await self._finished(RetryDone(target=target, status="failed", error=message))
            return
        if outcome.status == "done" and (outcome.events or outcome.moves):
            item = workflow.get_external_workflow_handle(item_workflow_id(call.entity, call.item_id))
            try:
                for event in outcome.events:
                    await item.signal(ITEM_EVENT, ItemEvent(type=event.type, data=event.data, event_id=event.event_id))
                for move in outcome.moves:
                    await item.signal(RULE_MOVE, move)
            except FailureError as error:
                workflow.logger.info("events of %s not passed on: %s", rule.name, error)
        await self._finished(RetryDone(target=target, status=outcome.status, error=outcome.reason))

    async def _finished(self, done: RetryDone) -> None:
        await run_step(RETRY_FINISHED, done, current=True, summary=f"{done.target.rule}: {done.status}")
