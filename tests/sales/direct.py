"""Calling a rule's effect directly, as a retried activity attempt would, against a real stack."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from activities.rule import RuleContext
from activities.rules import RULE_TYPES
from models.item_data import build_data
from models.tables import Item
from workflows.types import RuleCall, RulePlan, entry_workflow_id


def rule_context(
    stack, item_id: int, rule_type: str, settings: dict[str, Any], *, name: str = "rule", deps=None,
    constants: dict[str, Any] | None = None,
) -> RuleContext:
    """The context the engine gives rule `name` of the item's current stage entry (same effect key each call)."""
    with stack.session() as session:
        item = session.get(Item, item_id)
        data = build_data(session, item, constants=constants)
    call = RuleCall(
        item_id=item.id,
        entity=item.entity_type,
        pipeline_id=item.pipeline_id,
        stage=item.stage,
        entry_no=item.entry_no,
        workflow_id=entry_workflow_id(item.entity_type, item.id, item.entry_no),
        rule=RulePlan(index=0, name=name, type=rule_type, activity=f"rule.{rule_type}", settings=settings),
        at=datetime.now(UTC),
        constants=dict(constants or {}),
    )
    typed = RULE_TYPES[rule_type].settings.model_validate(settings)
    return RuleContext(deps=deps or stack.deps, call=call, settings=typed, data=data, item=item)

