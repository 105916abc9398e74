"""Failed rules after an outage: what failed (grouped by rule type and error), and running them again in bulk as an
operation (a dry run by default), whose progress anyone can read."""

from __future__ import annotations

import re
import secrets
from collections import defaultdict
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, delete, select
from temporalio.client import Client

from activities.services.failures import FailedRule, being_retried, open_failures
from api.errors import not_found
from api.schemas import FailuresRetry, FailureWindow
from models.settings import Settings
from models.tables import Operation, OperationTarget
from workflows import client as workflow_client

SAMPLES = 5
"""Failed rules shown in each group."""
PARTICULARS = [
    (re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"), "<address>"),
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"\+?\d[\d ]{6,}\d"), "<number>"),
    (re.compile(r"\b[0-9a-f]{16,}\b"), "<id>"),
]
"""What differs between the errors of one cause (the address refused, the URL called, an id): left out of the
error a group is known by."""


def error_kind(error: str) -> str:
    """The error without its particulars: `recipients refused (<address>: 451 4.3.0 down)`."""
    for pattern, word in PARTICULARS:
        error = pattern.sub(word, error)
    return error
RETRY = "failures_retry"


def _failures(session: Session, window: FailureWindow) -> list[FailedRule]:
    return open_failures(session, since=window.since, until=window.until, pipeline_id=window.pipeline_id,
                         rule_type=window.rule_type)


def failures_report(session: Session, window: FailureWindow) -> dict[str, Any]:
    """`{"total", "groups": [{"rule_type", "error", "count", "sample": [...]}]}`, the largest group first."""
    groups: dict[tuple[str, str], list[FailedRule]] = defaultdict(list)
    failures = _failures(session, window)
    for failure in failures:
        groups[(failure.rule_type, error_kind(failure.error))].append(failure)
    shown = sorted(groups.items(), key=lambda group: (-len(group[1]), group[0]))
    return {
        "total": len(failures),
        "groups": [{
            "rule_type": rule_type, "error": error, "count": len(rules),
            "sample": [{"entity": rule.entity, "item_id": rule.item_id, "rule": rule.rule, "stage": rule.stage,
                        "failed_at": rule.failed_at.isoformat(), "error": rule.error} for rule in rules[-SAMPLES:]],
        } for (rule_type, error), rules in shown],
    }


async def retry_failures(
    session: Session, client: Client, settings: Settings, order: FailuresRetry, *, created_by: str,
) -> dict[str, Any]:
    """The dry run's count; or the operation that runs the failed rules again (its targets chosen now, in one
    transaction, then its workflow started; a workflow that cannot be started leaves no operation behind). Rules an
    unfinished operation is still to run are left to it."""
    taken = being_retried(session)
    failures = [rule for rule in _failures(session, order) if (rule.workflow_id, rule.rule) not in taken]
    if order.dry_run:
        return {"dry_run": True, "count": len(failures)}
    operation_id = secrets.token_hex(8)
    operation = Operation(
        id=operation_id, kind=RETRY, workflow_id=workflow_client.retry_workflow_id(operation_id), created_by=created_by,
        params=order.model_dump(mode="json", exclude={"dry_run"}),
    )
    session.add(operation)
    session.flush()
    session.add_all([OperationTarget(
        operation_id=operation_id, item_id=rule.item_id, entity=rule.entity, pipeline_id=rule.pipeline_id,
        stage=rule.stage, entry_no=rule.entry_no, workflow_id=rule.workflow_id, rule=rule.rule,
        rule_type=rule.rule_type, version=rule.version,
    ) for rule in failures])
    session.commit()
    try:
        await workflow_client.start_retry(client, settings, operation_id, rate=order.rate, automation=order.automation)
    except Exception:
        session.exec(delete(OperationTarget).where(OperationTarget.operation_id == operation_id))
        session.exec(delete(Operation).where(Operation.id == operation_id))
        session.commit()
        raise
    return {"dry_run": False, "count": len(failures), "operation_id": operation_id}


def get_operation(session: Session, operation_id: str) -> Operation:
    operation = session.get(Operation, operation_id)
    if operation is None:
        raise not_found("Operation", operation_id)
    return operation


def operation_progress(session: Session, operation: Operation) -> dict[str, Any]:
    """`{"id", "kind", "state": "running"|"done", "total", "done", "failed", …}`: how far the operation is, counted
    from its targets (`done` counts the rules that took effect or were skipped by their condition)."""
    counts: dict[str, int] = dict(session.exec(
        select(OperationTarget.status, func.count()).where(OperationTarget.operation_id == operation.id)
        .group_by(OperationTarget.status)).all())
    return {
        "id": operation.id, "kind": operation.kind, "state": "done" if operation.finished_at else "running",
        "total": sum(counts.values()), "done": counts.get("done", 0) + counts.get("skipped", 0),
        "failed": counts.get("failed", 0), "cancelled": counts.get("cancelled", 0),
        "pending": counts.get("pending", 0), "params": operation.params, "created_by": operation.created_by,
        "created_at": operation.created_at.isoformat(),
        "finished_at": operation.finished_at.isoformat() if operation.finished_at else None,
        "workflow_id": operation.workflow_id,
    }


def failed_targets(session: Session, operation: Operation, limit: int = 100) -> list[OperationTarget]:
    """The operation's rules that failed again, with their errors."""
    return list(session.exec(select(OperationTarget).where(
        OperationTarget.operation_id == operation.id, OperationTarget.status == "failed",
    ).order_by(OperationTarget.id).limit(limit)).all())
