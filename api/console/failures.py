"""Failed rules in the console: the groups `GET /failures` shows, a dry-run count, "retry these", and the
operation's progress, live."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path as PathParam, Request, status
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlmodel import Session, select

from api.console import forms
from api.console.pages import ChangeDep, UserDep, back, page
from api.console.session import ConsoleUser, require_admin
from api.console.words import rule_titles
from api.deps import ClientDep, SessionDep, SettingsDep
from api.schemas import FailuresRetry, FailureWindow
from api.usecases import failures
from models.tables import Pipeline

router = APIRouter()
OperationId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{16}$")]
FILTERS = ("since", "until", "pipeline_id", "rule_type")
LABELS = {"since": "From", "until": "Until", "pipeline_id": "Pipeline", "rule_type": "Rule type", "rate": "Rate",
          "automation": "Run with"}


def _moment(text: str, zone: str, end: bool) -> str | None:
    """A day or a time typed in the form, in the company's time zone, as a moment; `until` a day takes the whole
    day in. Text that is no date goes on as typed, for the check to name."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    try:
        if len(text) <= 10:
            moment = datetime.combine(moment.date() + timedelta(days=1 if end else 0), time.min)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(zone))
        return moment.astimezone(timezone.utc).isoformat()
    except OverflowError:
        return text


def _typed(form: Any) -> dict[str, str]:
    return {name: str(form.get(name) or "").strip()[:40] for name in (*FILTERS, "rate", "automation")}


def _window(typed: dict[str, str], zone: str) -> dict[str, Any]:
    return {"since": _moment(typed["since"], zone, False), "until": _moment(typed["until"], zone, True),
            "pipeline_id": typed["pipeline_id"] or None, "rule_type": typed["rule_type"] or None}


def _page(request: Request, user: ConsoleUser, session: Session, typed: dict[str, str], errors: dict[str, str],
          *, count: int | None = None, status_code: int = status.HTTP_200_OK) -> HTMLResponse:
    report = None
    if not errors:
        try:
            report = failures.failures_report(session, FailureWindow.model_validate(
                _window(typed, request.state.zone)))
        except ValidationError as error:
            errors = _errors(error)
            status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
    return page(request, "failures.html", user, status_code=status_code, report=report, typed=typed, errors=errors,
                count=count, pipelines=session.exec(select(Pipeline).order_by(Pipeline.id)).all(),
                rule_types=rule_titles(session))


def _errors(error: ValidationError) -> dict[str, str]:
    placed: dict[str, str] = {}
    for problem in error.errors():
        name = str(problem["loc"][0]) if problem["loc"] else "form"
        placed[name if name in LABELS else "form"] = f"{LABELS.get(name, name)}: {forms.plain(problem['msg'])}"
    return placed


@router.get("/failures", response_class=HTMLResponse)
def failures_page(request: Request, user: UserDep, session: SessionDep):
    """Rules whose last outcome is failed, grouped by rule type and error, with the latest few of each group."""
    return _page(request, user, session, _typed(request.query_params), {})


@router.post("/failures/retry", response_class=HTMLResponse)
async def retry(request: Request, user: ChangeDep, session: SessionDep, client: ClientDep, settings: SettingsDep):
    """`dry_run` set: the page again with the number a retry would run. Otherwise the operation starts and its
    progress page opens."""
    require_admin(user)
    form = await request.form()
    typed = _typed(form)
    dry_run = form.get("dry_run") in ("1", "true", "on")
    try:
        order = FailuresRetry.model_validate({
            **_window(typed, request.state.zone), "dry_run": dry_run, "rate": typed["rate"] or 10,
            "automation": typed["automation"] or "recorded",
        })
    except ValidationError as error:
        return _page(request, user, session, typed, _errors(error), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    answer = await failures.retry_failures(session, client, settings, order, created_by=user.name)
    if dry_run:
        return _page(request, user, session, typed, {}, count=answer["count"])
    return back(f"/ui/operations/{answer['operation_id']}")


def _operation(session: Session, operation_id: str) -> dict[str, Any]:
    operation = failures.get_operation(session, operation_id)
    progress = failures.operation_progress(session, operation)
    progress["again"] = failures.failed_targets(session, operation, limit=20)
    return progress


@router.get("/operations/{operation_id}", response_class=HTMLResponse)
def operation_page(request: Request, operation_id: OperationId, user: UserDep, session: SessionDep,
                   settings: SettingsDep):
    progress = _operation(session, operation_id)
    return page(request, "operation.html", user, progress=progress,
                workflow_link=settings.workflow_ui_link(progress["workflow_id"]))


@router.get("/operations/{operation_id}/progress", response_class=HTMLResponse)
def operation_progress(request: Request, operation_id: OperationId, user: UserDep, session: SessionDep):
    """The progress part of the page, which asks again every second until the operation is done."""
    return page(request, "operation_progress.html", user, progress=_operation(session, operation_id))
