"""API keys: admin keys configure, member keys work with items. A key is shown once and stored hashed."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlmodel import select

from api.deps import MAX_ID, PageDep, SessionDep, admin_only, hash_key, paginate
from api.errors import not_found
from api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from models.tables import ApiKey

router = APIRouter(prefix="/api-keys", tags=["api keys"], dependencies=admin_only)
KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create_api_key(body: ApiKeyCreate, session: SessionDep):
    key = f"sf_{secrets.token_urlsafe(32)}"
    row = ApiKey(name=body.name, role=body.role, key_hash=hash_key(key))
    session.add(row)
    session.commit()
    session.refresh(row)
    return ApiKeyCreated.model_validate(row, update={"key": key})


@router.get("", response_model=list[ApiKeyPublic])
def list_api_keys(session: SessionDep, page: PageDep, response: Response):
    return paginate(session, select(ApiKey).order_by(ApiKey.id), page, response)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_api_key(key_id: KeyId, session: SessionDep) -> None:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise not_found("API key", key_id)
    row.revoked = True
    session.add(row)
    session.commit()
