"""What the due-moment tests do to a moment: read the rules handed to it, end its workflow before it runs them, and
leave a rule as a moment whose attempt failed (and may be tried again) leaves it."""

from __future__ import annotations

from sqlmodel import col, select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.steps.moments import encode
from models.tables import HandedRule
from tests.crm import eventually
from workflows.types import AGAIN, RuleOutcome, due_workflow_id, outside_moment


def handed(stack, key: str) -> list[HandedRule]:
    """The rules handed to moment `key` (database-only ones and those that reach the outside), by item."""
    with stack.session() as session:
        return list(session.exec(select(HandedRule).where(col(HandedRule.moment).in_((key, outside_moment(key))))
                                 .order_by(HandedRule.item_id, HandedRule.id)))


async def moment_gone(stack, key: str) -> None:
    """The moment's workflow, once the rule that started it has, ends without running anything."""
    moment = stack.client.get_workflow_handle(due_workflow_id(key))

    async def started() -> bool:
        try:
            return (await moment.describe()).status == WorkflowExecutionStatus.RUNNING
        except RPCError:
            return False

    await eventually(started)
    await moment.terminate("the moment's worker is gone")


def ran_to_be_tried_again(stack, row_id: int) -> None:
    """The handed rule as its moment leaves one whose lone attempt failed for a reason that may pass, its entry not
    told yet."""
    with stack.session() as session:
        row = session.get(HandedRule, row_id)
        row.state, row.outcome = "done", encode(RuleOutcome(status=AGAIN, reason="database is locked",
                                                           result={"attempt": 1}))
        session.add(row)
