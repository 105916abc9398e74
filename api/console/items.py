"""Deals and leads in the console: their boards, creating one, dragging one to another stage, and each item's page,
where a manager works the item: its fields edited, a move, a comment, its tasks and activities done, archived and
restored, what is pending, and what will happen to it (a simulation). Every change goes through the use case the
JSON API uses; a refused form comes back with everything that was typed and the problem next to its field."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, col, select

from api.console import forms
from api.console.pages import ChangeDep, Entity, Id, UserDep, back, page, refusal_text
from api.console.session import ConsoleUser, require_admin
from api.console.words import entry_words, rule_titles, simulation_in_words, words_for
from api.deps import ClientDep, SessionDep, SettingsDep
from api.files import document_file
from api.lookups import contacts_by_name, get_pipeline, stages_of
from api.schemas import ItemCreate, ItemUpdate
from api.simulation.plan import plan_steps, simulator
from api.simulation.runner import Plan, SimulationsBusy
from api.simulation.schemas import ItemSimulate
from api.usecases import items, tasks
from api.usecases.automation import current_automation
from api.usecases.documents import get_document
from api.usecases.users import users_by_name
from api.errors import Problems
from models.domain.fields import MAX_TEXT_LENGTH
from models.domain.wording import time_after
from models.settings import Settings
from models.tables import Contact, CrmActivity, Document, Item, Message, Pipeline, Task, TimelineEntry, User
from workflows.types import entry_workflow_id, item_workflow_id

router = APIRouter()
EDITED_FIELDS = ("title", "amount", "currency", "responsible_id", "contact_id", "close_date")
LABELS = {"title": "Title", "amount": "Amount", "currency": "Currency", "responsible_id": "Responsible",
          "contact_id": "Contact", "close_date": "Close date", "pipeline_id": "Pipeline", "stage": "Stage"}


def form_errors(problems: list[dict[str, Any]]) -> dict[str, str]:
    """Each problem of a refusal next to the form field it names (by the field's label in the message), the
    others under `form`."""
    errors: dict[str, str] = {}
    for problem in problems:
        loc = [str(part) for part in problem.get("loc") or []]
        name = loc[1] if len(loc) > 1 and loc[0] == "body" else "form"
        message = forms.problem_words(problem)
        label = LABELS.get(name)
        errors[name if label else "form"] = f"{label}: {message}" if label else message
    return errors


Typed = Annotated[str, Form(max_length=100_000)]
"""A form field as typed: up to 100,000 characters; within that the use case's own checks refuse what is too long,
by name, and the form comes back filled in."""


def _refused(refused: ValidationError | HTTPException) -> dict[str, str]:
    return form_errors(forms.refusal_problems(refused))


def _choices(session: Session) -> dict[str, Any]:
    return {"users": users_by_name(session),
            "contacts": contacts_by_name(session)}


def _board(request: Request, user: ConsoleUser, session: Session, pipeline: Pipeline, *, values: dict[str, str],
           errors: dict[str, str], form_key: str, status_code: int = 200) -> HTMLResponse:
    cards = session.exec(select(Item).where(Item.pipeline_id == pipeline.id, col(Item.archived_at).is_(None))
                         .order_by(col(Item.id).desc()).limit(500)).all()
    columns = [{"stage": stage, "cards": [item for item in cards if item.stage == stage.code]}
               for stage in stages_of(session, pipeline.id)]
    return page(request, "items.html", user, status_code=status_code, pipeline=pipeline, columns=columns,
                values=values, errors=errors, form_key=form_key, **_choices(session))


@router.get("/pipelines/{pipeline_id}/items", response_class=HTMLResponse)
def items_board(request: Request, pipeline_id: Id, user: UserDep, session: SessionDep):
    return _board(request, user, session, get_pipeline(session, pipeline_id), values={}, errors={},
                  form_key=secrets.token_urlsafe(18))


@router.post("/pipelines/{pipeline_id}/items")
async def create_item(
    request: Request, pipeline_id: Id, user: ChangeDep, session: SessionDep, client: ClientDep, settings: SettingsDep,
    title: Typed = "", responsible_id: Typed = "", contact_id: Typed = "", amount: Typed = "", currency: Typed = "",
    stage: Typed = "",
    idempotency_key: Annotated[str, Form(max_length=200, pattern=r"^[\x21-\x7e]*$")] = "",
):
    """A new item from the board's form, in the stage chosen (the first unless another is): created by the same use
    case as `POST /deals`, with the same checks and the form's own `Idempotency-Key` (a form sent twice makes one
    item). A refused form comes back filled in."""
    pipeline = get_pipeline(session, pipeline_id)
    typed = {"title": title, "responsible_id": responsible_id, "contact_id": contact_id, "amount": amount,
             "currency": currency, "stage": stage}
    values = {"title": title, "pipeline_id": pipeline_id, "responsible_id": responsible_id or None,
              "contact_id": contact_id or None, "amount": forms.decimal_text(amount) or None,
              "currency": currency or None,
              "stage": stage or None}
    try:
        body = ItemCreate.model_validate({key: value for key, value in values.items() if value is not None})
        item = await items.create_item(session, client, settings, pipeline.entity_type, body,
                                       idempotency_key=idempotency_key or None)
    except ValidationError as error:
        return _board(request, user, session, pipeline, values=typed, errors=_refused(error),
            form_key=idempotency_key or secrets.token_urlsafe(18), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    except HTTPException as refused:
        if refused.status_code >= 500:
            raise
        reused = isinstance(refused.detail, list) and any(
            list(problem.get("loc") or []) == ["header", "Idempotency-Key"] for problem in refused.detail)
        made = items.made_with_key(session, pipeline.entity_type, idempotency_key) if reused else None
        if made is not None:
            # This form made an item before (its answer was lost, or the item could not enter its stage then): the
            # form says which, and is a new form from now on.
            return _board(request, user, session, pipeline, values=typed, errors={"form": (
                f"This form made {made.entity_type} {made.id} ({made.title}) already: /ui/items/{made.entity_type}/"
                f"{made.id}. Sent now, it makes a new one.")}, form_key=secrets.token_urlsafe(18),
                status_code=status.HTTP_409_CONFLICT)
        return _board(request, user, session, pipeline, values=typed, errors=_refused(refused),
                      form_key=idempotency_key or secrets.token_urlsafe(18), status_code=refused.status_code)
    return back(f"/ui/items/{item.entity_type}/{item.id}")


@router.post("/items/{entity}/{item_id}/move")
async def move(request: Request, entity: Entity, item_id: Id, user: ChangeDep, session: SessionDep, client: ClientDep,
               settings: SettingsDep, stage: Annotated[str, Form(pattern=r"^[A-Z0-9_]{1,50}$")],
               from_page: Annotated[str, Form(max_length=1)] = ""):
    """A drag on the board (answered with JSON), or the item page's move (`from_page`, answered with the page): the
    item's move through its workflow; a refusal comes back with its reason."""
    item = items.get_item(session, entity, item_id)
    try:
        moved = await items.move_item(session, client, settings, item, stage)
    except HTTPException as refused:
        if from_page:
            return await _item(request, user, session, settings, item, {"move": refusal_text(refused)},
                               status_code=refused.status_code)
        return JSONResponse({"moved": False, "detail": refusal_text(refused)}, status_code=refused.status_code)
    if from_page:
        return back(f"/ui/items/{entity}/{item_id}")
    return JSONResponse({"moved": True, "stage": moved["stage"]})


def _edited(form: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """What the item page's field form says: as typed, and as the change of the item (empty inputs clear a field
    that may be empty)."""
    typed = {name: str(form.get(name) or "") for name in EDITED_FIELDS}
    custom = {name.removeprefix("field."): str(value) for name, value in form.multi_items()
              if name.startswith("field.") and isinstance(value, str)}
    typed.update({f"field.{name}": value for name, value in custom.items()})
    change: dict[str, Any] = {
        "title": typed["title"], "responsible_id": typed["responsible_id"] or None,
        "amount": forms.decimal_text(typed["amount"]) or None, "currency": typed["currency"] or None,
        "contact_id": typed["contact_id"] or None, "close_date": typed["close_date"] or None,
    }
    if custom:
        change["fields"] = {name: value or None for name, value in custom.items()}
    return typed, change


@router.post("/items/{entity}/{item_id}/fields", response_class=HTMLResponse)
async def edit_fields(request: Request, entity: Entity, item_id: Id, user: ChangeDep, session: SessionDep,
                      client: ClientDep, settings: SettingsDep):
    """The item's fields changed on its page, through the same use case as `PATCH /deals/{id}`: one `field_changed`
    entry on the timeline names each field from → to."""
    item = items.get_item(session, entity, item_id)
    typed, change = _edited(await request.form())
    current = {name: getattr(item, name) for name in EDITED_FIELDS}
    try:
        body = ItemUpdate.model_validate(change)
        changes = {name: value for name, value in body.model_dump(exclude_unset=True).items()
                   if name == "fields" or value != current.get(name)}
        await items.update_item(session, client, settings, item, changes)
    except ValidationError as error:
        return await _item(request, user, session, settings, item, form_errors(
            [{"loc": ["body", *problem["loc"]], "msg": problem["msg"]} for problem in error.errors()]),
            typed=typed, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    except HTTPException as refused:
        return await _item(request, user, session, settings, item, _refused(refused), typed=typed,
                           status_code=refused.status_code)
    return back(f"/ui/items/{entity}/{item_id}")


@router.post("/items/{entity}/{item_id}/comments", response_class=HTMLResponse)
async def comment(request: Request, entity: Entity, item_id: Id, user: ChangeDep, session: SessionDep,
                  settings: SettingsDep, text: Typed = ""):
    item = items.get_item(session, entity, item_id)
    problem = ("Write a comment first." if not text.strip() else
               f"Comment: at most {MAX_TEXT_LENGTH:,} characters; this one has {len(text.strip()):,}"
               if len(text.strip()) > MAX_TEXT_LENGTH else "")
    if problem:
        return await _item(request, user, session, settings, item, {"comment": problem}, comment=text,
                           status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    items.add_comment(session, item, f"{text.strip()}", None)
    return back(f"/ui/items/{entity}/{item_id}")


@router.post("/items/{entity}/{item_id}/archive", response_class=HTMLResponse)
async def archive(request: Request, entity: Entity, item_id: Id, user: ChangeDep, session: SessionDep,
                  client: ClientDep, settings: SettingsDep):
    """Archive the item: its waiting rules are cancelled, it leaves the board."""
    item = items.get_item(session, entity, item_id)
    try:
        await items.archive_item(session, client, item)
    except HTTPException as refused:
        return await _item(request, user, session, settings, item, _refused(refused), status_code=refused.status_code)
    return back(f"/ui/items/{entity}/{item_id}")


@router.post("/items/{entity}/{item_id}/restore", response_class=HTMLResponse)
async def restore(request: Request, entity: Entity, item_id: Id, user: ChangeDep, session: SessionDep,
                  client: ClientDep, settings: SettingsDep):
    """An archived item back in its stage (its stage's rules do not run again)."""
    item = items.get_item(session, entity, item_id)
    try:
        await items.restore_item(session, client, item)
    except HTTPException as refused:
        return await _item(request, user, session, settings, item, _refused(refused), status_code=refused.status_code)
    return back(f"/ui/items/{entity}/{item_id}")


@router.post("/tasks/{task_id}/complete")
async def complete_task(task_id: Id, user: ChangeDep, session: SessionDep, client: ClientDep, settings: SettingsDep):
    """A task done from the item's page: a `task_status` event for the item's triggers, as `PATCH /tasks/{id}`."""
    task = tasks.get_task(session, task_id)
    await tasks.update_task(session, client, settings, task, {"status": "completed"})
    return back(f"/ui/items/{_entity_of(session, task.item_id)}/{task.item_id}" if task.item_id else "/ui/pipelines")


@router.post("/activities/{activity_id}/complete")
def complete_activity(activity_id: Id, user: ChangeDep, session: SessionDep):
    crm_activity = tasks.set_crm_activity_completed(session, tasks.get_crm_activity(session, activity_id), True)
    item_id = crm_activity.item_id
    return back(f"/ui/items/{_entity_of(session, item_id)}/{item_id}" if item_id else "/ui/pipelines")


def _entity_of(session: Session, item_id: int | None) -> str:
    item = session.get(Item, item_id) if item_id else None
    return item.entity_type if item is not None else "deal"


@router.post("/items/{entity}/{item_id}/simulate", response_class=HTMLResponse)
async def simulate_item(request: Request, entity: Entity, item_id: Id, user: ChangeDep, session: SessionDep,
                        settings: SettingsDep, horizon: Typed = "30d"):
    """What will happen to this item if nothing else happens: its entry goes on in a simulation (what its rules did
    stays done), the coming months as a table on its page."""
    require_admin(user)
    item = items.get_item(session, entity, item_id)
    if item.stage is None or item.archived_at is not None:
        return await _item(request, user, session, settings, item,
                           {"simulate": "Only an item in a stage, not archived, has a future to simulate."},
                           status_code=status.HTTP_409_CONFLICT)
    try:
        body = ItemSimulate.model_validate({"horizon": horizon.strip() or "30d"})
    except ValidationError as error:
        return await _item(request, user, session, settings, item,
                           {"simulate": f"Simulate for: {forms.plain(error.errors()[0]['msg'])}"},
                           status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    problems = Problems()
    config = current_automation(session, item.pipeline_id)
    steps, length = plan_steps(session, problems, body, [stage.code for stage in stages_of(session, item.pipeline_id)],
                               config)
    if problems.items:
        return await _item(request, user, session, settings, item,
                           {"simulate": f"Simulate for: {forms.plain(problems.items[0]['msg'])}"},
                           status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    plan = Plan(pipeline_id=item.pipeline_id, entity=entity, stage=item.stage, steps=steps, horizon=length,
                webhooks={}, item_id=item.id)
    try:
        answer = await simulator(request).run(plan)
    except SimulationsBusy as busy:
        return await _item(request, user, session, settings, item, {"simulate": str(busy)},
                           status_code=status.HTTP_429_TOO_MANY_REQUESTS)
    start = datetime.fromisoformat(answer["started_at"])
    for entry in answer["timeline"]:
        entry["after"] = time_after(start, datetime.fromisoformat(entry["at"]))
    return await _item(request, user, session, settings, item, {},
                       simulation=simulation_in_words(session, answer, item.pipeline_id, request.state.zone))


@router.get("/deals/{item_id}")
def deal_page(item_id: Id, user: UserDep) -> Response:
    """The address of a deal as the API names it, for the page that shows it."""
    return back(f"/ui/items/deal/{item_id}")


@router.get("/leads/{item_id}")
def lead_page(item_id: Id, user: UserDep) -> Response:
    return back(f"/ui/items/lead/{item_id}")


@router.get("/items/{entity}/{item_id}", response_class=HTMLResponse)
async def item_page(request: Request, entity: Entity, item_id: Id, user: UserDep, session: SessionDep,
                    settings: SettingsDep, kind: Annotated[str, Query(max_length=100)] = ""):
    return await _item(request, user, session, settings, items.get_item(session, entity, item_id), {}, kind=kind)


OUTCOMES = {"rule_done": "done", "rule_skipped": "skipped", "rule_cancelled": "cancelled", "rule_failed": "failed"}
STARTED = {"rule_scheduled": "waiting", "rule_waiting": "waiting"}
"""A rule of the current entry scheduled, or waiting for something after its effect, and not ended yet."""


def _entries(session: Session, item: Item) -> list[dict[str, Any]]:
    """Each stage entry of the item by number: its stage change, when the next one ended it, whether a workflow of
    its own ran it (none did for an entry finished as the item entered its stage), and how its rules ended (each
    rule by its last outcome)."""
    changes = {change.entry_no: change for change in session.exec(select(TimelineEntry).where(
        TimelineEntry.item_id == item.id, TimelineEntry.kind == "stage_changed")).all() if change.entry_no}
    last: dict[tuple[int, str | None], str] = {}
    for no, rule, kind in session.exec(
            select(TimelineEntry.entry_no, TimelineEntry.rule_name, TimelineEntry.kind)
            .where(TimelineEntry.item_id == item.id,
                   col(TimelineEntry.kind).in_([*OUTCOMES, *STARTED]))
            .order_by(TimelineEntry.id)).all():
        last[(no, rule)] = OUTCOMES.get(kind) or STARTED[kind]
    ordered = sorted(changes.items())
    entries = []
    for place, (no, change) in enumerate(ordered):
        current = place + 1 == len(ordered) and item.archived_at is None
        ended = [outcome for (entry_no, _), outcome in last.items() if entry_no == no]
        words = [*OUTCOMES.values(), *(["waiting"] if current else [])]
        entries.append({
            "no": no, "change": change, "own": not change.entry_without_workflow,
            "until": ordered[place + 1][1].at if place + 1 < len(ordered) else None,
            "outcomes": ", ".join(f"{ended.count(word)} {word}" for word in words if word in ended),
        })
    return entries


async def _item(request: Request, user: ConsoleUser, session: Session, settings: Settings, item: Item,
                errors: dict[str, str], *, typed: dict[str, str] | None = None, comment: str = "", kind: str = "",
                simulation: dict[str, Any] | None = None, status_code: int = 200) -> HTMLResponse:
    """The item's page: its fields (as typed, when a form came back), its story and its work, with `errors` next to
    the forms they belong to (a refused comment stays in its box)."""
    session.refresh(item)
    kinds = sorted(set(session.exec(select(TimelineEntry.kind).where(TimelineEntry.item_id == item.id)).all()))
    stages = stages_of(session, item.pipeline_id)
    names = {stage.code: stage.name for stage in stages}
    entries = [{**entry, "stage": names.get(entry["change"].data.get("to"), entry["change"].data.get("to")),
                "at": entry["change"].at,
                "link": settings.workflow_ui_link(entry_workflow_id(item.entity_type, item.id, entry["no"])
                                                  if entry["own"] else item_workflow_id(item.entity_type, item.id))}
               for entry in _entries(session, item)]
    values = typed or {
        "title": item.title, "amount": "" if item.amount is None else f"{item.amount:g}",
        "currency": item.currency or "",
        "responsible_id": str(item.responsible_id), "contact_id": str(item.contact_id or ""),
        "close_date": item.close_date.isoformat() if item.close_date else "",
        **{f"field.{name}": "" if value is None else str(value) for name, value in item.fields.items()
           if not isinstance(value, (dict, list))},
    }
    by_item = {"item_id": item.id}
    return page(
        request, "item.html", user, status_code=status_code, item=item,
        timeline=_timeline(session, item, kind, request.state.zone, names),
        kinds=kinds, kind=kind, entries=entries, stages=stages, stage_name=names.get(item.stage, item.stage),
        stage_names=names,
        pipeline=session.get(Pipeline, item.pipeline_id), errors=errors, values=values, comment=comment,
        simulation=simulation,
        responsible=session.get(User, item.responsible_id),
        contact=session.get(Contact, item.contact_id) if item.contact_id else None,
        tasks=session.exec(select(Task).filter_by(**by_item).order_by(Task.id)).all(),
        activities=session.exec(select(CrmActivity).filter_by(**by_item).order_by(CrmActivity.id)).all(),
        messages=session.exec(select(Message).filter_by(**by_item).order_by(Message.id)).all(),
        documents=session.exec(select(Document.id, Document.number, Document.title, Document.template,
                                      Document.status).where(Document.item_id == item.id)).all(),
        item_link=settings.workflow_ui_link(f"{item.entity_type}-{item.id}"), **_choices(session),
    )


@router.get("/items/{entity}/{item_id}/timeline", response_class=HTMLResponse)
def item_timeline(request: Request, entity: Entity, item_id: Id, user: UserDep, session: SessionDep,
                  kind: Annotated[str, Query(max_length=100)] = ""):
    """The item's timeline, newest first (the page refreshes it)."""
    item = items.get_item(session, entity, item_id)
    return page(request, "timeline.html", user, timeline=_timeline(session, item, kind, request.state.zone))


PENDING_STATES = {"waiting_delay": "waiting for its time", "waiting_previous": "waiting for the rule before it",
                  "waiting_rule": "waiting for a rule it reads", "running": "running now"}


def _timeline(session: Session, item: Item, kind: str, zone: str,
              names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The item's timeline, newest first, in words: stage names for codes (`names`, when the caller read them),
    times in the company's zone."""
    statement = select(TimelineEntry).where(TimelineEntry.item_id == item.id)
    if kind:
        statement = statement.where(TimelineEntry.kind == kind)
    if names is None:
        names, titles = words_for(session, item.pipeline_id)
    else:
        titles = rule_titles(session)
    return [{"at": entry.at, "kind": entry.kind,
             "text": entry_words(entry.kind, entry.text, entry.data, names, zone, titles)}
            for entry in session.exec(statement.order_by(col(TimelineEntry.at).desc(), col(TimelineEntry.id).desc())
                                      .limit(500)).all()]


@router.get("/items/{entity}/{item_id}/pending", response_class=HTMLResponse)
async def pending(request: Request, entity: Entity, item_id: Id, user: UserDep, session: SessionDep,
                  client: ClientDep, settings: SettingsDep):
    """What the item's stage entry is waiting for, asked of the workflow now (the page polls this)."""
    item = items.get_item(session, entity, item_id)
    asked: list[dict[str, Any]] | None = []
    problem = ""
    try:
        asked = await items.ask_pending(session, client, settings, item)
    except Exception as error:  # the workflow service is away: the page says so and asks again later
        problem = f"the workflow service did not answer: {type(error).__name__}"
    rules = asked or []
    titles = rule_titles(session)
    return page(request, "pending.html", user, rules=rules, problem=problem, now=datetime.now(timezone.utc),
                titles=titles, states=PENDING_STATES, asked=asked is not None)


@router.get("/documents/{document_id}/{kind}")
def download_document(document_id: Id, kind: Literal["pdf", "docx"], user: UserDep, session: SessionDep) -> Response:
    return document_file(get_document(session, document_id), kind, inline=True)
