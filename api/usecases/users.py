"""Users of the CRM: the people deals and leads are given to, who supervise, sign and write on timelines. The
API's route and the console's People page add them here."""

from __future__ import annotations

from sqlmodel import Session, select

from api.errors import Problems
from api.schemas import UserCreate
from models.tables import User


def create_user(session: Session, body: UserCreate) -> User:
    """A new user; a supervisor named must exist."""
    problems = Problems()
    if body.supervisor_id is not None and session.get(User, body.supervisor_id) is None:
        problems.add(("body", "supervisor_id"), f"user {body.supervisor_id} does not exist")
    problems.raise_if_any()
    user = User.model_validate(body)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def users_by_name(session: Session) -> list[User]:
    """Every user, by name: the choices of a form that names one."""
    return list(session.exec(select(User).order_by(User.name, User.id)).all())
