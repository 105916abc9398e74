"""Deals and leads: the items that move through pipeline stages.

Both resources have the same routes, built by one factory; an item of the other entity type is not found.
The item's stage is written only by its workflow: creating and moving go through `workflows.client`.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from fastapi.responses import JSONResponse
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowUpdateFailedError

from api.changes import change_item, check_references
from api.deps import MAX_ID, ClientDep, PageDep, SessionDep, SettingsDep, member_only, page_of, paginate
from api.errors import Problems, not_found
from api.idempotency import Idempotency, IdempotencyKey
from api.lookups import stages_of
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
from models.settings import Settings
from models.tables import Item, Pipeline, TimelineEntry, User
from workflows import client as workflow_client

RefId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
KindFilter = Annotated[str | None, Query(min_length=1, max_length=100)]

WaitQuery = Annotated[bool, Query(description="Answer once the item has handled the event (200), not at once (202)")]


def rejected(error: workflow_client.MoveRejected) -> HTTPException:
    return HTTPException(status_code=error.status_code, detail=error.detail)


def item_router(entity: Literal["deal", "lead"]) -> APIRouter:
    """The routes of one entity type (`deal` or `lead`) under `/deals` or `/leads`."""
    title = entity.capitalize()
    router = APIRouter(prefix=f"/{entity}s", tags=[f"{entity}s"], dependencies=member_only)
    ItemId = Annotated[int, Path(alias=f"{entity}_id", ge=1, le=MAX_ID)]
    one = f"/{{{entity}_id}}"

    def get_item(session: Session, item_id: int) -> Item:
        item = session.get(Item, item_id)
        if item is None or item.entity_type != entity:
            raise not_found(title, item_id)
        return item

    def public(item: Item) -> dict[str, Any]:
        return ItemPublic.model_validate(item).model_dump(mode="json")

    def stage_problem(session: Session, pipeline_id: int, stage: str) -> str | None:
        codes = [row.code for row in stages_of(session, pipeline_id)]
        if stage in codes:
            return None
        return f"pipeline {pipeline_id} has no stage {stage} (its stages: {', '.join(codes)})"

    def first_stage_or_problem(session: Session, body: ItemCreate, problems: Problems) -> str | None:
        """The stage a new item enters: the one asked for, or the pipeline's first."""
        pipeline = session.get(Pipeline, body.pipeline_id)
        if pipeline is None or pipeline.entity_type != entity:
            what = "does not exist" if pipeline is None else f"holds {pipeline.entity_type}s, not {entity}s"
            problems.add(("body", "pipeline_id"), f"pipeline {body.pipeline_id} {what}")
            return None
        if body.stage is None:
            return stages_of(session, pipeline.id)[0].code
        if (problem := stage_problem(session, pipeline.id, body.stage)) is not None:
            problems.add(("body", "stage"), problem)
        return body.stage

    @router.post("", response_model=ItemPublic, status_code=status.HTTP_201_CREATED, name=f"create_{entity}")
    async def create(
        body: ItemCreate,
        session: SessionDep,
        client: ClientDep,
        settings: SettingsDep,
        idempotency_key: IdempotencyKey = None,
    ):
        """Create the item; it enters its stage (the pipeline's first if none is given) and the stage's rules start."""
        record = Idempotency(session, f"{entity}s/create", idempotency_key)
        earlier = record.recall()
        if earlier is not None:
            item, stage = get_item(session, earlier.response["item_id"]), earlier.response["stage"]
        else:
            stage = first_stage_or_problem(session, body, problems := Problems())
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
                raise rejected(error) from error
            session.refresh(item)
        return public(item)

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
        return get_item(session, item_id)

    @router.patch(one, response_model=ItemPublic, name=f"update_{entity}")
    async def update(
        item_id: ItemId, body: ItemUpdate, session: SessionDep, client: ClientDep, settings: SettingsDep
    ):
        """Change the item's data. Changed fields are a `field_changed` event, a new responsible a
        `responsible_changed` event, for the triggers of the item's pipeline."""
        item = get_item(session, item_id)
        changes = body.model_dump(exclude_unset=True)
        by_user_id = changes.pop("by_user_id", None)
        problems = Problems()
        check_references(session, problems, {**changes, "by_user_id": by_user_id})
        problems.raise_if_any()

        await change_item(session, client, settings, item, changes, by_user_id)
        return public(item)

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
        item = get_item(session, item_id)
        record = Idempotency(session, f"{entity}-{item_id}/move", idempotency_key)
        earlier = record.recall()
        if earlier is not None:
            return JSONResponse(earlier.response, status_code=earlier.status_code)
        problems = Problems()
        if (problem := stage_problem(session, item.pipeline_id, body.stage)) is not None:
            problems.add(("body", "stage"), problem)
        if body.as_user_id is not None and session.get(User, body.as_user_id) is None:
            problems.add(("body", "as_user_id"), f"user {body.as_user_id} does not exist")
        problems.raise_if_any()
        try:
            if item.stage is None:
                await workflow_client.start_item(client, settings, item, body.stage, as_user_id=body.as_user_id)
            else:
                await workflow_client.move_item(
                    client, settings, item, body.stage, as_user_id=body.as_user_id, request_id=idempotency_key
                )
        except workflow_client.MoveRejected as error:
            record.remember(error.status_code, {"detail": error.detail})
            raise rejected(error) from error
        session.refresh(item)
        answer = public(item)
        record.remember(status.HTTP_200_OK, answer)
        return answer

    def require_started(item: Item) -> None:
        if item.stage is None:
            raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=f"{title} {item.id} has not entered a stage yet")

    async def deliver(
        client: Client, settings: Settings, item: Item, type: str, data: dict, event_id: str | None, wait: bool
    ) -> Accepted | JSONResponse:
        if not wait:
            await workflow_client.send_event(client, settings, item, type, data, event_id=event_id)
            return Accepted()
        try:
            handled = await workflow_client.handle_event(client, settings, item, type, data, event_id=event_id)
        except WorkflowUpdateFailedError as error:
            raise HTTPException(status_code=status.HTTP_409_CONFLICT,
                                detail=f"the {entity} could not handle the event: {error.cause or error}") from error
        answer = EventAnswer(matched=handled.matched, stage=handled.stage, moved=handled.moved)
        return JSONResponse(answer.model_dump(), status_code=status.HTTP_200_OK)

    @router.post(
        one + "/events", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED, name=f"{entity}_event",
        responses={200: {"model": EventAnswer, "description": "With `?wait=true`: what the item did"}},
    )
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
        item = get_item(session, item_id)
        require_started(item)
        return await deliver(client, settings, item, body.type, body.data, idempotency_key, wait)

    @router.post(
        one + "/payments", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED, name=f"{entity}_payment",
        responses={200: {"model": EventAnswer, "description": "With `?wait=true`: what the item did"}},
    )
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
        item = get_item(session, item_id)
        require_started(item)
        data = {"amount": body.amount, "currency": body.currency or item.currency}
        return await deliver(client, settings, item, "payment_received", data, idempotency_key, wait)

    @router.post(
        one + "/comments",
        response_model=TimelinePublic,
        status_code=status.HTTP_201_CREATED,
        name=f"comment_{entity}",
    )
    def post_comment(item_id: ItemId, body: CommentCreate, session: SessionDep):
        """A comment on the item's timeline."""
        item = get_item(session, item_id)
        problems = Problems()
        if body.author_id is not None and session.get(User, body.author_id) is None:
            problems.add(("body", "author_id"), f"user {body.author_id} does not exist")
        problems.raise_if_any()
        entry = TimelineEntry(
            item_id=item.id, kind="comment", text=body.text, author_id=body.author_id, entry_no=item.entry_no
        )
        session.add(entry)
        session.commit()
        session.refresh(entry)
        return entry

    @router.get(one + "/timeline", response_model=list[TimelinePublic], name=f"{entity}_timeline")
    def timeline(item_id: ItemId, session: SessionDep, page: PageDep, response: Response, kind: KindFilter = None):
        """The item's history, oldest first."""
        get_item(session, item_id)
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
        item = get_item(session, item_id)
        return page_of(await workflow_client.pending_rules(client, settings, item), page, response)

    return router


deals = item_router("deal")
leads = item_router("lead")
