"""Users of the CRM: responsibles, supervisors, signers, authors of timeline entries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlmodel import Session, select

from api.deps import MAX_ID, PageDep, SessionDep, admin_only, member_only, paginate
from api.errors import Problems, not_found
from api.schemas import UserCreate, UserPublic, UserUpdate
from api.usecases import users
from models.tables import User

router = APIRouter(prefix="/users", tags=["users"], dependencies=member_only)
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _supervisor_problem(session: Session, user_id: int | None, supervisor_id: int) -> str | None:
    """Why `supervisor_id` cannot supervise `user_id` (unknown, the user itself, or a loop), or None."""
    seen = {user_id}
    current: int | None = supervisor_id
    while current is not None:
        if current in seen:
            return "would make the user their own supervisor"
        seen.add(current)
        row = session.get(User, current)
        if row is None:
            return f"user {current} does not exist" if current == supervisor_id else None
        current = row.supervisor_id
    return None


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
    changes = body.model_dump(exclude_unset=True)
    problems = Problems()
    if changes.get("supervisor_id") is not None:
        problem = _supervisor_problem(session, user_id, changes["supervisor_id"])
        if problem:
            problems.add(("body", "supervisor_id"), problem)
    problems.raise_if_any()
    user.sqlmodel_update(changes)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user
