"""Deals and leads: create one, move it, change its data, comment on it, report a payment or an event, answer a rule
that waits for a callback, read what its stage entry is waiting for.

Creating and moving go through the item's workflow (`workflows.client`), the only writer of its stage; a change of
its data is written here and then told to the workflow as the events its triggers and delays listen to.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any, Literal

from fastapi import HTTPException, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from activities.steps.at_entering import stage_change
from api.errors import Problems, not_found
from api.idempotency import Idempotency
from api.lookups import stages_of
from api.schemas import ItemCreate, ItemPublic
from models.domain.events import Event, FieldChanged, PaymentReceived, ResponsibleChanged
from models.domain.timing import CUSTOM_FIELD_PREFIX
from models.domain.placeholders import money
from models.domain.wording import field_words
from models.settings import Settings
from models.tables import (
    Callback, Company, Contact, Item, Pipeline, Stage, TimelineEntry, User, utcnow,
)
from workflows import client as workflow_client
from workflows.types import CallbackSignal, EventHandled

log = logging.getLogger(__name__)
Entity = Literal["deal", "lead"]


def get_item(session: Session, entity: str, item_id: int) -> Item:
    """The deal or lead; 404 for an unknown id or an item of the other entity type."""
    item = session.get(Item, item_id)
    if item is None or item.entity_type != entity:
        raise not_found(entity.capitalize(), item_id)
    return item


def item_public(item: Item) -> dict[str, Any]:
    return ItemPublic.model_validate(item).model_dump(mode="json")


def require_started(item: Item) -> None:
    """Events need an item that has entered a stage (its workflow runs) and is not archived."""
    if item.stage is None:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT,
                            detail=f"{item.entity_type.capitalize()} {item.id} has not entered a stage yet")
    require_active(item)


def require_active(item: Item) -> None:
    """Moves and events wait until an archived item is restored."""
    if item.archived_at is not None:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT,
                            detail=f"{item.entity_type.capitalize()} {item.id} is archived; restore it first")


def check_references(session: Session, problems: Problems, values: dict[str, Any], where: tuple = ("body",)) -> None:
    """Adds a problem for each of responsible_id, contact_id, company_id, by_user_id naming a missing row."""
    for field, model, what in (
        ("responsible_id", User, "user"),
        ("by_user_id", User, "user"),
        ("contact_id", Contact, "contact"),
        ("company_id", Company, "company"),
    ):
        ident = values.get(field)
        if ident is not None and session.get(model, ident) is None:
            problems.add((*where, field), f"{what} {ident} does not exist")


def stage_problem(session: Session, pipeline_id: int, stage: str) -> str | None:
    codes = [row.code for row in stages_of(session, pipeline_id)]
    if stage in codes:
        return None
    return f"pipeline {pipeline_id} has no stage {stage} (its stages: {', '.join(codes)})"


def check_list_filter(session: Session, entity: str, pipeline_id: int | None, stage: str | None) -> None:
    """A list filtered by a pipeline that does not hold these items, or by a stage no such pipeline has, is refused
    naming the filter (an empty list would say there are none)."""
    problems = Problems()
    if pipeline_id is not None:
        if (problem := pipeline_problem(session, entity, pipeline_id)) is not None:
            problems.add(("query", "pipeline_id"), problem)
        elif stage is not None and (problem := stage_problem(session, pipeline_id, stage)) is not None:
            problems.add(("query", "stage"), problem)
    elif stage is not None and session.exec(
            select(Stage.id).join(Pipeline, col(Pipeline.id) == Stage.pipeline_id)
            .where(Stage.code == stage, Pipeline.entity_type == entity).limit(1)).first() is None:
        problems.add(("query", "stage"), f"no {entity} pipeline has a stage {stage}")
    problems.raise_if_any()


def pipeline_problem(session: Session, entity: str, pipeline_id: int) -> str | None:
    """Why pipeline `pipeline_id` cannot hold these items (missing, or holding the other kind), or None."""
    pipeline = session.get(Pipeline, pipeline_id)
    if pipeline is None:
        return f"pipeline {pipeline_id} does not exist"
    if pipeline.entity_type != entity:
        return f"pipeline {pipeline_id} holds {pipeline.entity_type}s, not {entity}s"
    return None


def _first_stage(session: Session, entity: str, body: ItemCreate, problems: Problems) -> str | None:
    """The stage a new item enters: the one asked for, or the pipeline's first."""
    if (problem := pipeline_problem(session, entity, body.pipeline_id)) is not None:
        problems.add(("body", "pipeline_id"), problem)
        return None
    if body.stage is None:
        stages = stages_of(session, body.pipeline_id)
        if not stages:
            problems.add(("body", "pipeline_id"), f"pipeline {body.pipeline_id} has no stages")
            return None
        return stages[0].code
    if (problem := stage_problem(session, body.pipeline_id, body.stage)) is not None:
        problems.add(("body", "stage"), problem)
    return body.stage


def _rejected(error: workflow_client.MoveRejected) -> HTTPException:
    return HTTPException(status_code=error.status_code, detail=error.detail)


def _recalled(answer: Any) -> dict[str, Any]:
    """The first answer to a request repeated under its `Idempotency-Key`: its item, or its refusal again."""
    if answer.status_code >= 400:
        raise HTTPException(status_code=answer.status_code, detail=answer.response.get("detail"))
    return answer.response


async def create_item(
    session: Session, client: Client, settings: Settings, entity: str, body: ItemCreate, *,
    idempotency_key: str | None = None,
) -> Item:
    """A new item: it enters its stage (the pipeline's first if none is given) and that stage's rules start. Sent
    again with the same key, the item made the first time (entering its stage now if the first call could not)."""
    record = Idempotency(session, f"{entity}s/create", idempotency_key, body.model_dump(mode="json"))
    earlier = record.recall()
    if earlier is not None:
        item, stage = get_item(session, entity, earlier.response["item_id"]), earlier.response["stage"]
    else:
        problems = Problems()
        stage = _first_stage(session, entity, body, problems)
        check_references(session, problems, body.model_dump())
        problems.raise_if_any()
        item = Item(entity_type=entity, stage=None, **body.model_dump(exclude={"stage"}))
        session.add(item)
        session.flush()
        record.remember(status.HTTP_201_CREATED, {"item_id": item.id, "stage": stage}, commit=False)
        session.commit()
    if item.stage is None:
        try:
            await workflow_client.start_item(client, settings, item, stage, as_user_id=None)
        except workflow_client.MoveRejected as error:
            raise _rejected(error) from error
        session.refresh(item)
    return item


def made_with_key(session: Session, entity: str, key: str) -> Item | None:
    """The item a creation with this `Idempotency-Key` made, if one did."""
    earlier = Idempotency(session, f"{entity}s/create", key).recall()
    item_id = (earlier.response or {}).get("item_id") if earlier is not None else None
    return session.get(Item, item_id) if item_id else None


async def resume_item(session: Session, client: Client, settings: Settings, item: Item) -> None:
    """The item's workflow starts over in the stage the item records, as the same entry (a simulation of an item
    that exists): what its rules did stays done, and their delays count from when it entered."""
    await workflow_client.start_item(client, settings, item, item.stage, as_user_id=None, resume=True)
    session.refresh(item)


async def move_item(
    session: Session, client: Client, settings: Settings, item: Item, stage: str, *, as_user_id: int | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """The item moves to `stage`; when this returns, the stage has changed and its rules have started. An item whose
    creation could not reach the workflow service (stage null) enters the stage now. The answer is the item as it
    is then; sent again with the same key, the first answer (or the first refusal)."""
    record = Idempotency(session, f"{item.entity_type}-{item.id}/move", idempotency_key,
                         {"stage": stage, "as_user_id": as_user_id})
    earlier = record.recall()
    if earlier is not None:
        return _recalled(earlier)
    require_active(item)
    problems = Problems()
    if (problem := stage_problem(session, item.pipeline_id, stage)) is not None:
        problems.add(("body", "stage"), problem)
    if as_user_id is not None and session.get(User, as_user_id) is None:
        problems.add(("body", "as_user_id"), f"user {as_user_id} does not exist")
    problems.raise_if_any()
    try:
        if item.stage is None:
            await workflow_client.start_item(client, settings, item, stage, as_user_id=as_user_id)
        else:
            await workflow_client.move_item(
                client, settings, item, stage, as_user_id=as_user_id, request_id=idempotency_key
            )
    except workflow_client.MoveRejected as error:
        record.remember(error.status_code, {"detail": error.detail})
        raise _rejected(error) from error
    session.refresh(item)
    answer = item_public(item)
    record.remember(status.HTTP_200_OK, answer)
    return answer


async def update_item(
    session: Session, client: Client, settings: Settings, item: Item, changes: dict[str, Any],
) -> list[str]:
    """A client's change of the item's data (`ItemUpdate` fields that were sent, `by_user_id` among them): checked,
    written, and told to the item's triggers. The names of the fields that changed."""
    changes = dict(changes)
    by_user_id = changes.pop("by_user_id", None)
    problems = Problems()
    check_references(session, problems, {**changes, "by_user_id": by_user_id})
    problems.raise_if_any()
    return await change_item(session, client, settings, item, changes, by_user_id)


async def change_item(
    session: Session, client: Client, settings: Settings, item: Item, changes: dict[str, Any],
    by_user_id: int | None = None,
) -> list[str]:
    """Writes `changes` (checked already; `fields` merged, a null removing one), records them on the item's
    timeline as one `field_changed` entry (each field from → to), and sends `field_changed` (and
    `responsible_changed`) to the item; the names of the fields that changed."""
    changes = dict(changes)
    changed: list[str] = []
    shown: list[dict[str, Any]] = []
    custom = changes.pop("fields", None)
    if custom:
        merged = dict(item.fields)
        for name, value in custom.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        for name in sorted(set(custom)):
            if item.fields.get(name) != merged.get(name):
                changed.append(f"{CUSTOM_FIELD_PREFIX}{name}")
                shown.append({"field": f"{CUSTOM_FIELD_PREFIX}{name}", "from": item.fields.get(name),
                              "to": merged.get(name)})
        item.fields = merged
    previous_responsible = item.responsible_id
    for name, value in changes.items():
        if getattr(item, name) != value:
            changed.append(name)
            shown.append({"field": name, "from": _plain(getattr(item, name)), "to": _plain(value)})
            setattr(item, name, value)
    if changed:
        item.updated_at = utcnow()
        session.add(item)
        session.add(TimelineEntry(
            item_id=item.id, kind="field_changed", text=_changes_text(session, shown), author_id=by_user_id,
            entry_no=item.entry_no, data={"changes": shown, "by_user_id": by_user_id},
        ))
        session.commit()
        session.refresh(item)
    if changed and item.stage is not None and item.archived_at is None:
        await tell(client, settings, item, FieldChanged(fields=changed, by_user_id=by_user_id))
        if "responsible_id" in changed:
            await tell(client, settings, item,
                       ResponsibleChanged(previous=previous_responsible, to=item.responsible_id, by_user_id=by_user_id))
    return changed


def _plain(value: Any) -> Any:
    """A field's value as the timeline keeps it (JSON)."""
    return value.isoformat() if hasattr(value, "isoformat") else value


NAMED_BY_ID = {"responsible_id": User, "contact_id": Contact, "company_id": Company}
"""The fields that hold the id of someone (or some company): the timeline names them."""


MONEY_FIELDS = ("amount", "paid")


def _changes_text(session: Session, shown: list[dict[str, Any]]) -> str:
    """`Changed amount 1500 → 2000; responsible Marek Manager → Sonia Supervisor`."""

    def value(field: str, raw: Any) -> str:
        if field in NAMED_BY_ID and isinstance(raw, int):
            named = session.get(NAMED_BY_ID[field], raw)
            return named.name if named is not None else f"#{raw}"
        if field in MONEY_FIELDS and isinstance(raw, (int, float)):
            return money(raw).text()
        if isinstance(raw, float) and raw.is_integer():
            return str(int(raw))
        return "—" if raw in (None, "") else str(raw)

    return "Changed " + "; ".join(
        f"{field_words(change['field'])} {value(change['field'], change['from'])} → "
        f"{value(change['field'], change['to'])}" for change in shown)


async def archive_item(session: Session, client: Client, item: Item, *, by_user_id: int | None = None) -> Item:
    """The item archived: its stage entry's waiting rules are cancelled (`reason: archived`), it leaves the boards
    and lists, and moves and events are refused until it is restored. Archiving an archived item is a 409."""
    if item.archived_at is not None:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT,
                            detail=f"{item.entity_type.capitalize()} {item.id} is archived already")
    item.archived_at = utcnow()
    session.add(item)
    marked = TimelineEntry(item_id=item.id, kind="item_archived", text=f"{item.entity_type.capitalize()} archived",
                           author_id=by_user_id, entry_no=item.entry_no, data={"stage": item.stage})
    session.add(marked)
    # Committed first: the entry's cancellation reads it to record "archived" as the reason.
    session.commit()
    if item.stage is not None:
        try:
            await workflow_client.archive_item(client, item, True)
        except BaseException:
            item.archived_at = None  # the workflow did not hear of it: nothing is archived
            session.add(item)
            session.delete(marked)
            session.commit()
            raise
    session.refresh(item)
    return item


async def restore_item(session: Session, client: Client, item: Item, *, by_user_id: int | None = None) -> Item:
    """An archived item back in its stage, whose rules do not run again; a 409 for an item that is not archived."""
    if item.archived_at is None:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT,
                            detail=f"{item.entity_type.capitalize()} {item.id} is not archived")
    if item.stage is not None:
        await workflow_client.archive_item(client, item, False)
    item.archived_at = None
    session.add(item)
    session.add(TimelineEntry(item_id=item.id, kind="item_restored",
                              text=f"{item.entity_type.capitalize()} restored in {item.stage or 'no stage'}",
                              author_id=by_user_id, entry_no=item.entry_no, data={"stage": item.stage}))
    session.commit()
    session.refresh(item)
    return item


def add_comment(session: Session, item: Item, text: str, author_id: int | None) -> TimelineEntry:
    """A comment on the item's timeline, by a user of the CRM (or no one)."""
    problems = Problems()
    if author_id is not None and session.get(User, author_id) is None:
        problems.add(("body", "author_id"), f"user {author_id} does not exist")
    problems.raise_if_any()
    entry = TimelineEntry(item_id=item.id, kind="comment", text=text, author_id=author_id, entry_no=item.entry_no)
    session.add(entry)
    session.commit()
    session.refresh(entry)
    return entry


def claim_event_key(session: Session, item: Item, key: str | None, request: dict[str, Any]) -> None:
    """A client's `Idempotency-Key` on an event for the item (posted, a payment, a webhook call, a client's event
    that reaches it): kept with the request the first time; the same key with another request is refused (422),
    since the item's workflow takes an event id once and would drop it. An item that cannot take events yet (409)
    keeps the key free."""
    if key:
        require_started(item)
    Idempotency(session, f"{item.entity_type}-{item.id}/events", key, request).claim()


async def tell(client: Client, settings: Settings, item: Item, event: Event, *, event_id: str | None = None) -> None:
    """The event goes to the item's workflow, for its triggers, without waiting for it to be handled."""
    await workflow_client.send_event(client, settings, item, event.type, event.data(), event_id=event_id)


async def send_event(
    client: Client, settings: Settings, item: Item, event: Event, *, event_id: str | None = None, wait: bool = False,
) -> EventHandled | None:
    """An event for the triggers of the item's pipeline (a repeated `event_id` is one event). With `wait`, once the
    item has handled it: the trigger it fired, its stage now, whether it moved; else None at once."""
    require_started(item)
    if not wait:
        await tell(client, settings, item, event, event_id=event_id)
        return None
    try:
        return await workflow_client.handle_event(client, settings, item, event.type, event.data(), event_id=event_id)
    except WorkflowUpdateFailedError as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT,
                            detail=f"the {item.entity_type} could not handle the event: {error.cause or error}") from error


async def report_payment(
    client: Client, settings: Settings, item: Item, amount: float, currency: str | None, *,
    event_id: str | None = None, wait: bool = False,
) -> EventHandled | None:
    """A payment for the item: the `payment_received` event, in the item's currency unless another is named."""
    payment = PaymentReceived(amount=amount, currency=currency or item.currency)
    return await send_event(client, settings, item, payment, event_id=event_id, wait=wait)


async def send_to_party_items(
    session: Session, client: Client, settings: Settings, owner_type: str, owner_id: int, event: Event, *,
    event_id: str | None = None, request: dict[str, Any] | None = None,
) -> list[Item]:
    """An event on a contact or company reaches every deal and lead linked to it that has entered a stage. A
    client's key (`request`: what the client sent) is the event id on each of them, so it is claimed on each first:
    a key an item took for another request refuses the whole event, before any item hears of it."""
    link = Item.contact_id if owner_type == "contact" else Item.company_id
    items = list(session.exec(
        select(Item).where(link == owner_id, col(Item.stage).is_not(None), col(Item.archived_at).is_(None))
        .order_by(Item.id)
    ).all())
    if request is not None:
        for item in items:
            claim_event_key(session, item, event_id, {"client_event": {owner_type: owner_id, **request}})
    for item in items:
        await tell(client, settings, item, event, event_id=event_id)
    return items


async def send_once(
    session: Session, client: Client, settings: Settings, item_id: int | None, *, key: str, event: Event, text: str,
) -> None:
    """A client's action on a public link (a document opened, an e-mail opened): `event` goes to the item unless
    the timeline already holds `key`, and is recorded there.

    A visitor's page must load even when the workflow service is down: a failed send is logged and not recorded,
    so the next visit sends it again.
    """
    if item_id is None or session.exec(select(TimelineEntry.id).where(TimelineEntry.key == key)).first():
        return
    item = session.get(Item, item_id)
    if item is None or item.stage is None or item.archived_at is not None:
        return
    data = event.data()
    try:
        await workflow_client.send_event(client, settings, item, event.type, data, event_id=key)
    except RPCError as error:
        log.warning("could not send %s to %s %s: %s", event.type, item.entity_type, item.id, error)
        return
    session.add(TimelineEntry(item_id=item.id, kind=event.type, text=text, key=key, entry_no=item.entry_no, data=data))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()


def entry_without_workflow(session: Session, item: Item) -> bool:
    """Whether the item's current stage entry was finished as the item entered its stage: no workflow waits on it."""
    if not item.entry_no:
        return False
    change = stage_change(session, item.entity_type, item.id, item.entry_no)
    return change is not None and change.entry_without_workflow


async def pending_rules(session: Session, client: Client, settings: Settings, item: Item) -> list[dict[str, Any]]:
    """The rules of the item's current stage entry still waiting: due time and why, asked of its workflow now (none
    for an entry finished as the item entered, whose workflow is not asked)."""
    return await ask_pending(session, client, settings, item) or []


async def ask_pending(session: Session, client: Client, settings: Settings,
                      item: Item) -> list[dict[str, Any]] | None:
    """`pending_rules`, or None when the entry was finished as the item entered and no workflow was asked."""
    if entry_without_workflow(session, item):
        return None
    return await workflow_client.pending_rules(client, settings, item)


UNKNOWN_CALLBACK = "Unknown or used callback"


async def answer_callback(session: Session, client: Client, token: str, values: dict[str, Any]) -> None:
    """An outside system answers a rule that waits for it: the values become the rule's results; once."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    callback = session.exec(select(Callback).where(Callback.token_hash == digest)).first()
    if callback is None or not hmac.compare_digest(callback.token_hash, digest) or callback.answered_at:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=UNKNOWN_CALLBACK)
    if callback.expires_at is not None and callback.expires_at.replace(tzinfo=None) < utcnow().replace(tzinfo=None):
        raise HTTPException(status_code=status.HTTP_410_GONE, detail="The callback has expired")
    try:
        await workflow_client.answer_callback(
            client, callback.workflow_id, CallbackSignal(rule=callback.rule_name, values=values)
        )
    except RPCError as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail="The rule no longer waits") from error
    callback.answered_at, callback.values = utcnow(), values
    session.add(callback)
    session.commit()
