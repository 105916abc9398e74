"""Users of the CRM: responsibles, supervisors, signers, authors of timeline entries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlmodel import select

from api.deps import MAX_ID, PageDep, SessionDep, admin_only, member_only, paginate
from api.errors import not_found
from api.schemas import UserCreate, UserPublic, UserUpdate
from api.usecases import users
from models.tables import User

router = APIRouter(prefix="/users", tags=["users"], dependencies=member_only)
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED, dependencies=admin_only)
def create_user(body: UserCreate, session: SessionDep):
    return users.create_user(session, body)


@router.get("", response_model=list[UserPublic])
def list_users(session: SessionDep, page: PageDep, response: Response):
    return paginate(session, select(User).order_by(User.id), page, response)


@router.get("/{user_id}", response_model=UserPublic)
def get_user(user_id: UserId, session: SessionDep):
    user = session.get(User, user_id)
    if user is None:
        raise not_found("User", user_id)
    return user


@router.patch("/{user_id}", response_model=UserPublic, dependencies=admin_only)
def update_user(user_id: UserId, body: UserUpdate, session: SessionDep):
    user = session.get(User, user_id)
    if user is None:
        raise not_found("User", user_id)
    return users.update_user(session, user, body)
