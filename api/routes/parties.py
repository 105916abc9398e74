"""Contacts and companies: the clients of deals and leads, with their requisites.

Both resources have the same routes, built by one factory.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlmodel import select

from api.deps import MAX_ID, ClientDep, PageDep, SessionDep, SettingsDep, member_only, paginate
from api.errors import not_found
from api.idempotency import Idempotency, IdempotencyKey
from api.usecases.items import send_to_party_items
from api.usecases.parties import create_party
from api.schemas import (
    EventCreate,
    PartyCreate,
    PartyEventAccepted,
    PartyPublic,
    PartyUpdate,
    RequisitesPublic,
    RequisitesUpdate,
)
from models.tables import Company, Contact, Requisites, utcnow
from models.domain.events import PostedEvent


def party_router(model: type[Contact] | type[Company], owner_type: str, prefix: str) -> APIRouter:
    """The routes of one kind of client (`contact` or `company`)."""
    title = owner_type.capitalize()
    router = APIRouter(prefix=prefix, tags=[f"{owner_type} clients"], dependencies=member_only)
    PartyId = Annotated[int, Path(alias=f"{owner_type}_id", ge=1, le=MAX_ID)]
    one = f"/{{{owner_type}_id}}"

    def get_or_404(session, party_id: int):
        row = session.get(model, party_id)
        if row is None:
            raise not_found(title, party_id)
        return row

    @router.post("", response_model=PartyPublic, status_code=status.HTTP_201_CREATED, name=f"create_{owner_type}")
    def create(body: PartyCreate, session: SessionDep):
        return create_party(session, model, body)

    @router.get("", response_model=list[PartyPublic], name=f"list_{owner_type}s")
    def list_all(session: SessionDep, page: PageDep, response: Response):
        return paginate(session, select(model).order_by(model.id), page, response)

    @router.get(one, response_model=PartyPublic, name=f"read_{owner_type}")
    def read(party_id: PartyId, session: SessionDep):
        return get_or_404(session, party_id)

    @router.patch(one, response_model=PartyPublic, name=f"update_{owner_type}")
    def update(party_id: PartyId, body: PartyUpdate, session: SessionDep):
        """Changes the fields given; `channels` replaces the messenger identities."""
        row = get_or_404(session, party_id)
        row.sqlmodel_update(body.model_dump(exclude_unset=True))
        session.add(row)
        session.commit()
        session.refresh(row)
        return row

    @router.put(one + "/requisites", response_model=RequisitesPublic, name=f"put_{owner_type}_requisites")
    def put_requisites(party_id: PartyId, body: RequisitesUpdate, session: SessionDep):
        get_or_404(session, party_id)
        row = session.exec(
            select(Requisites).where(Requisites.owner_type == owner_type, Requisites.owner_id == party_id)
        ).first() or Requisites(owner_type=owner_type, owner_id=party_id)
        row.sqlmodel_update(body.model_dump(mode="json"))
        row.updated_at = utcnow()
        session.add(row)
        session.commit()
        session.refresh(row)
        return row

    @router.get(one + "/requisites", response_model=RequisitesPublic, name=f"read_{owner_type}_requisites")
    def read_requisites(party_id: PartyId, session: SessionDep):
        get_or_404(session, party_id)
        row = session.exec(
            select(Requisites).where(Requisites.owner_type == owner_type, Requisites.owner_id == party_id)
        ).first()
        if row is None:
            raise not_found(f"Requisites of {owner_type}", party_id)
        return row

    @router.post(
        one + "/events",
        response_model=PartyEventAccepted,
        status_code=status.HTTP_202_ACCEPTED,
        name=f"{owner_type}_event",
    )
    async def post_event(
        party_id: PartyId,
        body: EventCreate,
        session: SessionDep,
        client: ClientDep,
        settings: SettingsDep,
        idempotency_key: IdempotencyKey = None,
    ):
        """An event on the client reaches every deal and lead linked to it."""
        get_or_404(session, party_id)
        Idempotency(session, f"{owner_type}-{party_id}/events", idempotency_key,
                    {"event": body.model_dump(mode="json")}).claim()
        event = PostedEvent(name=body.type, values=body.data)
        reached = await send_to_party_items(
            session, client, settings, owner_type, party_id, event, event_id=idempotency_key,
            request=body.model_dump(mode="json"),
        )
        return PartyEventAccepted(
            deal_ids=[item.id for item in reached if item.entity_type == "deal"],
            lead_ids=[item.id for item in reached if item.entity_type == "lead"],
        )

    return router


contacts = party_router(Contact, "contact", "/contacts")
companies = party_router(Company, "company", "/companies")
