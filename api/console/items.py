"""Deals and leads in the console: their boards, creating one, dragging one to another stage, and each item's page
with its story and what it is waiting for."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError
from sqlmodel import Session, col, select

from api.console.pages import ChangeDep, Entity, Id, UserDep, back, page, refusal_text
from api.deps import ClientDep, SessionDep, SettingsDep
from api.files import document_file
from api.lookups import get_pipeline, stages_of
from api.schemas import ItemCreate
from api.usecases import items
from api.usecases.documents import get_document
from models.tables import Contact, CrmActivity, Document, Item, Message, Pipeline, Task, TimelineEntry, User
from workflows.types import entry_workflow_id

router = APIRouter()

@router.get("/pipelines/{pipeline_id}/items", response_class=HTMLResponse)
def items_board(request: Request, pipeline_id: Id, user: UserDep, session: SessionDep, error: str = ""):
    pipeline = get_pipeline(session, pipeline_id)
    cards = session.exec(select(Item).where(Item.pipeline_id == pipeline_id).order_by(col(Item.id).desc())
                         .limit(500)).all()
    columns = [{"stage": stage, "cards": [item for item in cards if item.stage == stage.code]}
               for stage in stages_of(session, pipeline_id)]
    users = session.exec(select(User).order_by(User.name)).all()
    contacts = session.exec(select(Contact).order_by(Contact.name).limit(500)).all()
    return page(request, "items.html", user, pipeline=pipeline, columns=columns, users=users, contacts=contacts,
                error=error[:300], form_key=secrets.token_urlsafe(18))


@router.post("/pipelines/{pipeline_id}/items")
async def create_item(
    request: Request, pipeline_id: Id, user: ChangeDep, session: SessionDep, client: ClientDep, settings: SettingsDep,
    title: Annotated[str, Form(max_length=200)] = "", responsible_id: Annotated[str, Form(max_length=20)] = "",
    contact_id: Annotated[str, Form(max_length=20)] = "", amount: Annotated[str, Form(max_length=30)] = "",
    currency: Annotated[str, Form(max_length=3)] = "",
    idempotency_key: Annotated[str, Form(max_length=200, pattern=r"^[\x21-\x7e]*$")] = "",
):
    """A new item from the board's form: created by the same use case as `POST /deals`, with the same checks and the
    form's own `Idempotency-Key` (a form sent twice makes one item)."""
    pipeline = get_pipeline(session, pipeline_id)
    values = {"title": title, "pipeline_id": pipeline_id, "responsible_id": responsible_id or None,
              "contact_id": contact_id or None, "amount": amount or None, "currency": currency.upper() or None}
    try:
        body = ItemCreate.model_validate({key: value for key, value in values.items() if value is not None})
    except ValidationError as error:
        shown = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        return back(f"/ui/pipelines/{pipeline_id}/items?error={quote(shown[:250])}")
    try:
        item = await items.create_item(session, client, settings, pipeline.entity_type, body,
                                       idempotency_key=idempotency_key or None)
    except HTTPException as refused:
        if refused.status_code >= 500:
            raise
        return back(f"/ui/pipelines/{pipeline_id}/items?error={quote(refusal_text(refused)[:250])}")
    return back(f"/ui/items/{item.entity_type}/{item.id}")


@router.post("/items/{entity}/{item_id}/move")
async def move(entity: Entity, item_id: Id, user: ChangeDep, session: SessionDep, client: ClientDep,
               settings: SettingsDep, stage: Annotated[str, Form(pattern=r"^[A-Z0-9_]{1,50}$")]):
    """A drag on the board: the item's move through its workflow; a refusal comes back with its reason."""
    item = items.get_item(session, entity, item_id)
    try:
        moved = await items.move_item(session, client, settings, item, stage)
    except HTTPException as refused:
        return JSONResponse({"moved": False, "detail": refusal_text(refused)}, status_code=refused.status_code)
    return JSONResponse({"moved": True, "stage": moved["stage"]})


@router.get("/items/{entity}/{item_id}", response_class=HTMLResponse)
def item_page(request: Request, entity: Entity, item_id: Id, user: UserDep, session: SessionDep, settings: SettingsDep,
              kind: Annotated[str, Query(max_length=100)] = ""):
    item = items.get_item(session, entity, item_id)
    kinds = sorted(set(session.exec(select(TimelineEntry.kind).where(TimelineEntry.item_id == item.id)).all()))
    timeline = _timeline(session, item, kind)
    entries = [{"no": no, "stage": entry.data.get("to"), "at": entry.at,
                "link": settings.workflow_ui_link(entry_workflow_id(item.entity_type, item.id, no))}
               for no, entry in sorted(
                   {e.entry_no: e for e in session.exec(select(TimelineEntry).where(
                       TimelineEntry.item_id == item.id, TimelineEntry.kind == "stage_changed")).all()
                    if e.entry_no}.items())]
    by_item = {"item_id": item.id}
    return page(
        request, "item.html", user, item=item, timeline=timeline, kinds=kinds, kind=kind, entries=entries,
        pipeline=session.get(Pipeline, item.pipeline_id),
        responsible=session.get(User, item.responsible_id),
        contact=session.get(Contact, item.contact_id) if item.contact_id else None,
        tasks=session.exec(select(Task).filter_by(**by_item).order_by(Task.id)).all(),
        activities=session.exec(select(CrmActivity).filter_by(**by_item).order_by(CrmActivity.id)).all(),
        messages=session.exec(select(Message).filter_by(**by_item).order_by(Message.id)).all(),
        documents=session.exec(select(Document.id, Document.number, Document.title, Document.template,
                                      Document.status).where(Document.item_id == item.id)).all(),
        item_link=settings.workflow_ui_link(f"{item.entity_type}-{item.id}"),
    )


@router.get("/items/{entity}/{item_id}/timeline", response_class=HTMLResponse)
def item_timeline(request: Request, entity: Entity, item_id: Id, user: UserDep, session: SessionDep,
                  kind: Annotated[str, Query(max_length=100)] = ""):
    """The item's timeline, newest first (the page refreshes it)."""
    item = items.get_item(session, entity, item_id)
    return page(request, "timeline.html", user, timeline=_timeline(session, item, kind))


def _timeline(session: Session, item: Item, kind: str) -> list[TimelineEntry]:
    statement = select(TimelineEntry).where(TimelineEntry.item_id == item.id)
    if kind:
        statement = statement.where(TimelineEntry.kind == kind)
    return list(session.exec(statement.order_by(col(TimelineEntry.at).desc(), col(TimelineEntry.id).desc())
                             .limit(500)).all())


@router.get("/items/{entity}/{item_id}/pending", response_class=HTMLResponse)
async def pending(request: Request, entity: Entity, item_id: Id, user: UserDep, session: SessionDep,
                  client: ClientDep, settings: SettingsDep):
    """What the item's stage entry is waiting for, asked of the workflow now (the page polls this)."""
    item = items.get_item(session, entity, item_id)
    try:
        rules = await items.pending_rules(client, settings, item)
        problem = ""
    except Exception as error:  # the workflow service is away: the page says so and asks again later
        rules, problem = [], f"the workflow service did not answer: {type(error).__name__}"
    return page(request, "pending.html", user, rules=rules, problem=problem,
                now=datetime.now(timezone.utc).strftime("%H:%M:%S"))


@router.get("/documents/{document_id}/{kind}")
def download_document(document_id: Id, kind: Literal["pdf", "docx"], user: UserDep, session: SessionDep):
    return document_file(get_document(session, document_id), kind, inline=True)
