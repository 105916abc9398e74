"""Deals and leads: the items that move through pipeline stages.

Both resources have the same routes, built by one factory; an item of the other entity type is not found. Each
route parses its request, calls one use case (`api/usecases/items.py`) and renders its answer.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import JSONResponse
from sqlmodel import col, select

from api.deps import MAX_ID, ClientDep, PageDep, SessionDep, SettingsDep, member_only, page_of, paginate
from api.idempotency import IdempotencyKey
from api.schemas import (
    Accepted,
    CommentCreate,
    EventAnswer,
    EventCreate,
    ItemCreate,
    ItemPublic,
    ItemUpdate,
    MoveRequest,
    PaymentCreate,
    StageCode,
    TimelinePublic,
)
from api.usecases import items
from models.domain.events import PostedEvent
from models.tables import Item, TimelineEntry
from workflows.types import EventHandled

RefId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
KindFilter = Annotated[str | None, Query(min_length=1, max_length=100)]

WaitQuery = Annotated[bool, Query(description="Answer once the item has handled the event (200), not at once (202)")]
WAIT_ANSWER = {200: {"model": EventAnswer, "description": "With `?wait=true`: what the item did"}}


def event_answer(handled: EventHandled | None) -> Accepted | JSONResponse:
    """202 for an event sent; 200 with what the item did, for one it was waited for."""
    if handled is None:
        return Accepted()
    answer = EventAnswer(matched=handled.matched, stage=handled.stage, moved=handled.moved)
    return JSONResponse(answer.model_dump(), status_code=status.HTTP_200_OK)


def item_router(entity: Literal["deal", "lead"]) -> APIRouter:
    """The routes of one entity type (`deal` or `lead`) under `/deals` or `/leads`."""
    router = APIRouter(prefix=f"/{entity}s", tags=[f"{entity}s"], dependencies=member_only)
    ItemId = Annotated[int, Path(alias=f"{entity}_id", ge=1, le=MAX_ID)]
    one = f"/{{{entity}_id}}"

    @router.post("", response_model=ItemPublic, status_code=status.HTTP_201_CREATED, name=f"create_{entity}")
    async def create(
        body: ItemCreate,
        session: SessionDep,
        client: ClientDep,
        settings: SettingsDep,
        idempotency_key: IdempotencyKey = None,
    ):
        """Create the item; it enters its stage (the pipeline's first if none is given) and the stage's rules start."""
        item = await items.create_item(session, client, settings, entity, body, idempotency_key=idempotency_key)
        return items.item_public(item)

    @router.get("", response_model=list[ItemPublic], name=f"list_{entity}s")
    def list_items(
        session: SessionDep,
        page: PageDep,
        response: Response,
        pipeline_id: RefId = None,
        stage: Annotated[StageCode | None, Query()] = None,
        responsible_id: RefId = None,
        contact_id: RefId = None,
        company_id: RefId = None,
    ):
        statement = select(Item).where(Item.entity_type == entity).order_by(Item.id)
        for column, value in (
            (Item.pipeline_id, pipeline_id),
            (Item.stage, stage),
            (Item.responsible_id, responsible_id),
            (Item.contact_id, contact_id),
            (Item.company_id, company_id),
        ):
            if value is not None:
                statement = statement.where(column == value)
        return paginate(session, statement, page, response)

    @router.get(one, response_model=ItemPublic, name=f"read_{entity}")
    def read(item_id: ItemId, session: SessionDep):
        return items.get_item(session, entity, item_id)

    @router.patch(one, response_model=ItemPublic, name=f"update_{entity}")
    async def update(
        item_id: ItemId, body: ItemUpdate, session: SessionDep, client: ClientDep, settings: SettingsDep
    ):
        """Change the item's data. Changed fields are a `field_changed` event, a new responsible a
        `responsible_changed` event, for the triggers of the item's pipeline."""
        item = items.get_item(session, entity, item_id)
        await items.update_item(session, client, settings, item, body.model_dump(exclude_unset=True))
        return items.item_public(item)

    @router.post(one + "/move", response_model=ItemPublic, name=f"move_{entity}")
    async def move(
        item_id: ItemId,
        body: MoveRequest,
        session: SessionDep,
        client: ClientDep,
        settings: SettingsDep,
        idempotency_key: IdempotencyKey = None,
    ):
        """Move the item to a stage; when this returns, the stage has changed and its rules have started.
        An item whose creation could not reach the workflow service (stage null) enters the stage now."""
        item = items.get_item(session, entity, item_id)
        answer = await items.move_item(
            session, client, settings, item, body.stage, as_user_id=body.as_user_id, idempotency_key=idempotency_key
        )
        return JSONResponse(answer)

    @router.post(one + "/events", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED,
                 name=f"{entity}_event", responses=WAIT_ANSWER)
    async def post_event(
        item_id: ItemId,
        body: EventCreate,
        session: SessionDep,
        client: ClientDep,
        settings: SettingsDep,
        idempotency_key: IdempotencyKey = None,
        wait: WaitQuery = False,
    ):
        """An event for the triggers of the item's pipeline (a repeated `Idempotency-Key` is one event)."""
        item = items.get_item(session, entity, item_id)
        event = PostedEvent(name=body.type, values=body.data)
        return event_answer(await items.send_event(client, settings, item, event, event_id=idempotency_key, wait=wait))

    @router.post(one + "/payments", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED,
                 name=f"{entity}_payment", responses=WAIT_ANSWER)
    async def post_payment(
        item_id: ItemId,
        body: PaymentCreate,
        session: SessionDep,
        client: ClientDep,
        settings: SettingsDep,
        idempotency_key: IdempotencyKey = None,
        wait: WaitQuery = False,
    ):
        """A payment for the item: the `payment_received` event."""
        item = items.get_item(session, entity, item_id)
        handled = await items.report_payment(
            client, settings, item, body.amount, body.currency, event_id=idempotency_key, wait=wait
        )
        return event_answer(handled)

    @router.post(one + "/comments", response_model=TimelinePublic, status_code=status.HTTP_201_CREATED,
                 name=f"comment_{entity}")
    def post_comment(item_id: ItemId, body: CommentCreate, session: SessionDep):
        """A comment on the item's timeline."""
        return items.add_comment(session, items.get_item(session, entity, item_id), body.text, body.author_id)

    @router.get(one + "/timeline", response_model=list[TimelinePublic], name=f"{entity}_timeline")
    def timeline(item_id: ItemId, session: SessionDep, page: PageDep, response: Response, kind: KindFilter = None):
        """The item's history, oldest first."""
        items.get_item(session, entity, item_id)
        statement = (
            select(TimelineEntry)
            .where(TimelineEntry.item_id == item_id)
            .order_by(col(TimelineEntry.at), col(TimelineEntry.id))
        )
        if kind is not None:
            statement = statement.where(TimelineEntry.kind == kind)
        return paginate(session, statement, page, response)

    @router.get(one + "/pending", response_model=list[dict[str, Any]], name=f"{entity}_pending")
    async def pending(
        item_id: ItemId, session: SessionDep, client: ClientDep, settings: SettingsDep, page: PageDep, response: Response
    ):
        """The rules of the current stage entry still waiting: due time and why (delay, after previous, condition)."""
        item = items.get_item(session, entity, item_id)
        return page_of(await items.pending_rules(client, settings, item), page, response)

    return router


deals = item_router("deal")
leads = item_router("lead")
