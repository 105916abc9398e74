"""Deals and leads: the items that move through pipeline stages.

Both resources have the same routes, built by one factory; an item of the other entity type is not found. Each
route parses its request, calls one use case (`api/usecases/items.py`) and renders its answer.
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
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


def _item_of(entity: str) -> Callable[..., Item]:
    """The dependency that reads the item a path names (`/deals/{deal_id}`): it keeps the item for the route."""
    async def item_in_path(
        item_id: Annotated[int, Path(alias=f"{entity}_id", ge=1, le=MAX_ID)], request: Request, session: SessionDep
    ) -> Item:
        request.state.item = items.get_item(session, entity, item_id)
        return request.state.item

    return item_in_path


def _entity(entity: str) -> Callable[[Request], str]:
    """The dependency that tells a route of `/deals` from one of `/leads`."""
    async def entity_of_routes(request: Request) -> str:
        request.state.entity = entity
        return entity

    return entity_of_routes


async def current_item(request: Request) -> Item | None:
    """The item the route's path named; None only when the path was refused (the request is then a 4xx)."""
    return getattr(request.state, "item", None)


async def current_entity(request: Request) -> str:
    return request.state.entity


ItemDep = Annotated[Item, Depends(current_item)]
EntityDep = Annotated[str, Depends(current_entity)]


async def create(
    entity: EntityDep,
    body: ItemCreate,
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
):
    """Create the item; it enters its stage (the pipeline's first if none is given) and the stage's rules start."""
    item = await items.create_item(session, client, settings, entity, body, idempotency_key=idempotency_key)
    return items.item_public(item)


def list_items(
    entity: EntityDep,
    session: SessionDep,
    page: PageDep,
    response: Response,
    pipeline_id: RefId = None,
    stage: Annotated[StageCode | None, Query()] = None,
    responsible_id: RefId = None,
    contact_id: RefId = None,
    company_id: RefId = None,
    archived: Annotated[bool, Query(description="List the archived items instead of the others")] = False,
):
    items.check_list_filter(session, entity, pipeline_id, stage)
    statement = select(Item).where(Item.entity_type == entity).order_by(Item.id)
    statement = statement.where(col(Item.archived_at).is_not(None) if archived else col(Item.archived_at).is_(None))
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


def read(item: ItemDep):
    return item


async def update(item: ItemDep, body: ItemUpdate, session: SessionDep, client: ClientDep, settings: SettingsDep):
    """Change the item's data. Changed fields are a `field_changed` event, a new responsible a
    `responsible_changed` event, for the triggers of the item's pipeline."""
    await items.update_item(session, client, settings, item, body.model_dump(exclude_unset=True))
    return items.item_public(item)


async def move(
    item: ItemDep,
    body: MoveRequest,
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
):
    """Move the item to a stage; when this returns, the stage has changed and its rules have started.
    An item whose creation could not reach the workflow service (stage null) enters the stage now."""
    answer = await items.move_item(
        session, client, settings, item, body.stage, as_user_id=body.as_user_id, idempotency_key=idempotency_key
    )
    return JSONResponse(answer)


async def post_event(
    item: ItemDep,
    body: EventCreate,
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
    wait: WaitQuery = False,
):
    """An event for the triggers of the item's pipeline (a repeated `Idempotency-Key` is one event)."""
    items.claim_event_key(session, item, idempotency_key, {"event": body.model_dump(mode="json")})
    event = PostedEvent(name=body.type, values=body.data)
    return event_answer(await items.send_event(client, settings, item, event, event_id=idempotency_key, wait=wait))


async def post_payment(
    item: ItemDep,
    body: PaymentCreate,
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
    wait: WaitQuery = False,
):
    """A payment for the item: the `payment_received` event."""
    items.claim_event_key(session, item, idempotency_key, {"payment": body.model_dump(mode="json")})
    handled = await items.report_payment(
        client, settings, item, body.amount, body.currency, event_id=idempotency_key, wait=wait
    )
    return event_answer(handled)


def post_comment(item: ItemDep, body: CommentCreate, session: SessionDep):
    """A comment on the item's timeline."""
    return items.add_comment(session, item, body.text, body.author_id)


def timeline(item: ItemDep, session: SessionDep, page: PageDep, response: Response, kind: KindFilter = None):
    """The item's history, oldest first."""
    statement = (
        select(TimelineEntry)
        .where(TimelineEntry.item_id == item.id)
        .order_by(col(TimelineEntry.at), col(TimelineEntry.id))
    )
    if kind is not None:
        statement = statement.where(TimelineEntry.kind == kind)
    return paginate(session, statement, page, response)


async def archive(item: ItemDep, session: SessionDep, client: ClientDep):
    """Archive the item: its stage entry's waiting rules are cancelled (`data.reason: "archived"`), it leaves the
    boards and `GET /deals` (`?archived=true` lists it), and moves and events for it are a 409 until it is
    restored. Archiving it again is a 409."""
    return items.item_public(await items.archive_item(session, client, item))


async def restore(item: ItemDep, session: SessionDep, client: ClientDep):
    """Bring an archived item back in its stage; its stage's rules do not run again. A 409 when it is not
    archived."""
    return items.item_public(await items.restore_item(session, client, item))


async def pending(item: ItemDep, session: SessionDep, client: ClientDep, settings: SettingsDep, page: PageDep,
                  response: Response):
    """The rules of the current stage entry still waiting: due time and why (delay, after previous, condition)."""
    return page_of(await items.pending_rules(session, client, settings, item), page, response)


def item_router(entity: Literal["deal", "lead"]) -> APIRouter:
    """The routes of one entity type (`deal` or `lead`) under `/deals` or `/leads`: the functions above, each told
    its entity type or given its item by the path (`/deals/{deal_id}`)."""
    router = APIRouter(prefix=f"/{entity}s", tags=[f"{entity}s"], dependencies=member_only)
    one = f"/{{{entity}_id}}"
    of_entity = [Depends(_entity(entity))]
    of_item = [Depends(_item_of(entity))]
    accepted = {"response_model": Accepted, "status_code": status.HTTP_202_ACCEPTED, "responses": WAIT_ANSWER}
    routes: list[tuple[str, str, Callable, str, list, dict[str, Any]]] = [
        ("POST", "", create, f"create_{entity}", of_entity,
         {"response_model": ItemPublic, "status_code": status.HTTP_201_CREATED}),
        ("GET", "", list_items, f"list_{entity}s", of_entity, {"response_model": list[ItemPublic]}),
        ("GET", one, read, f"read_{entity}", of_item, {"response_model": ItemPublic}),
        ("PATCH", one, update, f"update_{entity}", of_item, {"response_model": ItemPublic}),
        ("POST", one + "/move", move, f"move_{entity}", of_item, {"response_model": ItemPublic}),
        ("POST", one + "/events", post_event, f"{entity}_event", of_item, accepted),
        ("POST", one + "/payments", post_payment, f"{entity}_payment", of_item, accepted),
        ("POST", one + "/comments", post_comment, f"comment_{entity}", of_item,
         {"response_model": TimelinePublic, "status_code": status.HTTP_201_CREATED}),
        ("GET", one + "/timeline", timeline, f"{entity}_timeline", of_item, {"response_model": list[TimelinePublic]}),
        ("GET", one + "/pending", pending, f"{entity}_pending", of_item, {"response_model": list[dict[str, Any]]}),
        ("POST", one + "/archive", archive, f"archive_{entity}", of_item, {"response_model": ItemPublic}),
        ("POST", one + "/restore", restore, f"restore_{entity}", of_item, {"response_model": ItemPublic}),
    ]
    for method, path, endpoint, name, dependencies, options in routes:
        router.add_api_route(path, endpoint, methods=[method], name=name, dependencies=dependencies, **options)
    return router


deals = item_router("deal")
leads = item_router("lead")
