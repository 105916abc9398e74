"""Failed rules after an outage: `GET /failures` (grouped, with samples), `POST /failures/retry` (a dry run by
default, else an operation), `GET /operations/{id}` (its progress)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import AdminDep, ClientDep, SessionDep, SettingsDep, member_only
from api.schemas import FailuresRetry, FailureWindow
from api.usecases import failures

router = APIRouter(tags=["failures"], dependencies=member_only)
OperationId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]


@router.get("/failures")
def list_failures(session: SessionDep, window: Annotated[FailureWindow, Query()]):
    """Rules whose last outcome is failed (a later run that took effect, was skipped or was cancelled settles
    one), that failed in [since, until), grouped by rule type and error, the largest group first, each with its
    count and its latest few rules."""
    return failures.failures_report(session, window)


@router.post("/failures/retry", status_code=status.HTTP_202_ACCEPTED)
async def retry_failures(body: FailuresRetry, session: SessionDep, client: ClientDep, settings: SettingsDep,
                         caller: AdminDep, response: Response):
    """`dry_run` (the default): 200 with the number of failed rules a retry would run. Otherwise 202 with the
    operation that runs each of them again, at most `rate` a second, as recorded or as the automation is now; a rule
    whose effect is stored already is not run again. Admin key."""
    answer = await failures.retry_failures(session, client, settings, body, created_by=caller.name)
    if answer["dry_run"]:
        response.status_code = status.HTTP_200_OK
    return answer


@router.get("/operations/{operation_id}")
def read_operation(operation_id: OperationId, session: SessionDep):
    """How far an operation is: `state` (running, done), `total`, `done`, `failed`, `cancelled`, `pending`."""
    return failures.operation_progress(session, failures.get_operation(session, operation_id))
