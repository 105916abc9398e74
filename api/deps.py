"""Request dependencies: settings, a DB session, the Temporal client, API-key auth, pagination."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import func
from sqlmodel import Session, select
from sqlmodel.sql.expression import SelectOfScalar
from temporalio.client import Client

from models.settings import Settings
from models.tables import ApiKey

# The largest id an INTEGER primary key holds on PostgreSQL; a larger one is refused as input instead of failing
# in the database.
MAX_ID = 2**31 - 1
Role = Literal["admin", "member"]


async def app_settings(request: Request) -> Settings:
    """The settings the app was made with (`create_app`)."""
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


async def get_temporal_client(request: Request) -> Client:
    return request.app.state.temporal_client


SettingsDep = Annotated[Settings, Depends(app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
ClientDep = Annotated[Client, Depends(get_temporal_client)]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who is calling: the bootstrap admin key (key_id None) or a stored API key."""

    name: str
    role: Role
    key_id: int | None = None
    key_hash: str = ""


bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def get_caller(
    settings: SettingsDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    if credentials is None or not credentials.credentials:
        raise _unauthorized("Missing API key: send `Authorization: Bearer <key>`")
    caller = caller_for_key(settings, session, credentials.credentials)
    if caller is None:
        raise _unauthorized("Invalid API key")
    return caller


def caller_for_key(settings: Settings, session: Session, given: str) -> Caller | None:
    """Who an API key is (the bootstrap admin key or a stored, unrevoked one); None for any other text."""
    bootstrap = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    if bootstrap and hmac.compare_digest(given.encode(), bootstrap.encode()):
        return Caller(name="bootstrap", role="admin", key_hash=hash_key(given))
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(given))).first()
    if row is None or row.revoked:
        return None
    return Caller(name=row.name, role="admin" if row.role == "admin" else "member", key_id=row.id, key_hash=row.key_hash)


async def require_admin(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    if caller.role != "admin":
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="This API key may not change configuration")
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]
AdminDep = Annotated[Caller, Depends(require_admin)]
member_only = [Depends(get_caller)]
admin_only = [Depends(require_admin)]


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


async def get_page(
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many rows")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="Skip this many rows")] = 0,
) -> Page:
    return Page(limit=limit, offset=offset)


PageDep = Annotated[Page, Depends(get_page)]


def paginate(session: Session, statement: SelectOfScalar, page: Page, response: Response) -> list:
    """One page of the statement's rows; the total count goes to the `X-Total-Count` header."""
    total = session.exec(select(func.count()).select_from(statement.order_by(None).subquery())).one()
    response.headers["X-Total-Count"] = str(total)
    return list(session.exec(statement.offset(page.offset).limit(page.limit)).all())


def page_of(rows: list, page: Page, response: Response) -> list:
    """Pagination for a list computed in memory."""
    response.headers["X-Total-Count"] = str(len(rows))
    return rows[page.offset : page.offset + page.limit]
