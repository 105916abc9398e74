"""The step of a version's apply (`ApplyVersionWorkflow`): the next entries of the pipeline, after the last item the
apply told, that run an older automation version (or this one: entries a step took before its answer was lost, and
entries begun on this version since, which ignore it), taken for the new one in the same transaction, with the new
version's rules of their stages.

The apply is started before the save that asks for it commits (so that no process can die between a committed save
and its apply): the step waits for the version to be saved by that very apply, and finds nothing to do when the
save was refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlmodel import Session, col, or_, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.rule import Deps
from activities.steps.planning import PlanningSteps
from models.domain.automation import AutomationConfig
from models.tables import AutomationVersion, Item
from workflows.types import ENTRIES_TO_APPLY, ApplyBatch, ApplyInput, EntryRef

SAVE_WAIT = timedelta(minutes=2)
"""How long an apply waits for the save that started it to commit; a save refused or lost never does."""


class VersionSteps:
    def __init__(self, deps: Deps, planning: PlanningSteps) -> None:
        self.deps = deps
        self.planning = planning

    @activity.defn(name=ENTRIES_TO_APPLY)
    async def entries_to_apply(self, order: ApplyInput) -> ApplyBatch:
        workflow_id = activity.info().workflow_id

        def work(session: Session) -> ApplyBatch:
            saved = session.get(AutomationVersion, (order.pipeline_id, order.version))
            if saved is None or saved.apply_workflow_id != workflow_id:
                if datetime.now(timezone.utc) - order.requested_at < SAVE_WAIT:
                    raise ApplicationError(f"version {order.version} is not saved (yet)", type="NotSavedYet")
                return ApplyBatch()
            items = session.exec(
                select(Item)
                .where(
                    Item.pipeline_id == order.pipeline_id, col(Item.stage).is_not(None), Item.entry_no > 0,
                    Item.id > order.after_item_id,
                    or_(col(Item.entry_version).is_(None), col(Item.entry_version) <= order.version),
                )
                .order_by(Item.id)
                .limit(order.batch)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).all()
            config = AutomationConfig.model_validate(saved.config)
            kinds = self.planning.all_rule_types(session)
            rules = {}
            for item in items:
                item.entry_version = order.version
                session.add(item)
                if item.stage not in rules:
                    stage = config.stages.get(item.stage)
                    rules[item.stage] = self.planning.rule_plans(kinds, stage.rules if stage else [], order.version)
            entries = [EntryRef(entity=item.entity_type, item_id=item.id, entry_no=item.entry_no, stage=item.stage)
                       for item in items]
            return ApplyBatch(entries=entries, rules=rules)

        return await self.deps.db(work)
