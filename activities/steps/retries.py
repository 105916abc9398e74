"""The steps of a retry operation (`RetryFailuresWorkflow`): the next failed rules it has not run again, one made
ready to run (its plan, its entry's results and variables, `rule_retried` on the timeline), how each ended, and the
operation's end."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlmodel import Session, col, select
from temporalio import activity

from activities.keys import effect_key
from activities.rule import Deps
from activities.steps.planning import PlanningSteps, rule_text
from models.domain.automation import AutomationConfig
from models.item_data import load_automation
from models.store import add_timeline
from models.tables import AutomationVersion, Effect, Item, Operation, OperationTarget
from workflows.types import (
    FINISH_OPERATION,
    NEXT_RETRIES,
    PREPARE_RETRY,
    RETRY_FINISHED,
    RetryDone,
    RetryInput,
    RetryPrepared,
    RetryTarget,
    RuleCall,
)

RETRIED = "rule_retried"


def retried_key(workflow_id: str, rule: str, operation_id: str) -> str:
    """The key of the `rule_retried` entry one operation writes for one rule: once per operation."""
    return f"{effect_key(workflow_id, rule)}/retried/{operation_id}"


class RetrySteps:
    def __init__(self, deps: Deps, planning: PlanningSteps) -> None:
        self.deps = deps
        self.planning = planning

    @activity.defn(name=NEXT_RETRIES)
    async def next_retries(self, order: RetryInput) -> list[RetryTarget]:
        def work(session: Session) -> list[RetryTarget]:
            rows = session.exec(
                select(OperationTarget)
                .where(OperationTarget.operation_id == order.operation_id, OperationTarget.status == "pending")
                .order_by(col(OperationTarget.id)).limit(order.rate)
            ).all()
            return [RetryTarget(id=row.id, operation_id=row.operation_id, item_id=row.item_id, entity=row.entity,
                                workflow_id=row.workflow_id, rule=row.rule, automation=order.automation)
                    for row in rows]

        return await self.deps.db(work)

    @activity.defn(name=PREPARE_RETRY)
    async def prepare_retry(self, target: RetryTarget) -> RetryPrepared:
        """The rule's call, as its entry would make it now; or, when there is nothing to run, why."""
        def work(session: Session) -> RetryPrepared:
            row = session.get(OperationTarget, target.id)
            if session.get(Effect, effect_key(target.workflow_id, target.rule)) is not None:
                return RetryPrepared(status="done", reason="it took effect before this retry")
            if session.get(Item, row.item_id).archived_at is not None:
                return RetryPrepared(status="cancelled", reason="the item was archived")
            config, version = self._automation(session, row, target.automation)
            stage = config.stages.get(row.stage)
            rules = stage.rules if stage is not None else []
            kinds = self.planning.all_rule_types(session)
            plans = {plan.name: plan for plan in self.planning.rule_plans(kinds, rules, version)}
            plan = plans.get(row.rule)
            if plan is None:
                which = "the automation now" if target.automation == "current" else f"automation version {version}"
                return RetryPrepared(status="failed", reason=f"{which} has no rule {row.rule} in stage {row.stage}")
            earlier = [rule.name for rule in rules[: plan.index]]
            effects = {effect.key: effect for effect in session.exec(select(Effect).where(
                col(Effect.key).in_([effect_key(row.workflow_id, name) for name in earlier])))}
            variables = dict(config.variables)
            results = {}
            for name in earlier:
                effect = effects.get(effect_key(row.workflow_id, name))
                if effect is None or effect.status != "done":
                    continue
                variables.update((effect.result or {}).get("variables") or {})
                if name in plan.depends_on:
                    results[name] = (effect.result or {}).get("result") or {}
            now = datetime.now(timezone.utc)
            add_timeline(
                session, row.item_id, RETRIED, f"Rule {rule_text(plan)} run again ({target.automation} automation)",
                at=now, key=retried_key(row.workflow_id, row.rule, row.operation_id), rule_name=row.rule,
                entry_no=row.entry_no, operation_id=row.operation_id, automation=target.automation,
                version=version or None,
            )
            call = RuleCall(
                item_id=row.item_id, entity=row.entity, pipeline_id=row.pipeline_id, stage=row.stage,
                entry_no=row.entry_no, workflow_id=row.workflow_id, rule=plan, at=now,
                constants=dict(config.constants), variables=variables, results=results,
            )
            return RetryPrepared(call=call, local=plan.local)

        return await self.deps.db(work)

    @staticmethod
    def _automation(session: Session, row: OperationTarget, which: str) -> tuple[AutomationConfig, int]:
        """The automation the rule runs with: the version its entry ran (when kept), or the one saved now."""
        if which == "recorded":
            version = row.version or (session.get(Item, row.item_id).entry_version or 0)
            saved = session.get(AutomationVersion, (row.pipeline_id, version)) if version else None
            if saved is not None:
                return AutomationConfig.model_validate(saved.config), version
        return load_automation(session, row.pipeline_id)

    @activity.defn(name=RETRY_FINISHED)
    async def retry_finished(self, done: RetryDone) -> None:
        def work(session: Session) -> None:
            row = session.get(OperationTarget, done.target.id)
            if row is None or row.status != "pending":
                return
            row.status, row.error, row.finished_at = done.status, done.error[:2000], datetime.now(timezone.utc)
            session.add(row)

        await self.deps.db(work)

    @activity.defn(name=FINISH_OPERATION)
    async def finish_operation(self, operation_id: str) -> None:
        def work(session: Session) -> None:
            operation = session.get(Operation, operation_id)
            if operation is not None and operation.finished_at is None:
                operation.finished_at = datetime.now(timezone.utc)
                session.add(operation)

        await self.deps.db(work)
