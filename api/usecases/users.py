"""Users of the CRM: the people deals and leads are given to, who supervise, sign and write on timelines. The
API's route and the console's People page add them here."""

from __future__ import annotations

from sqlmodel import Session, select

from api.errors import Problems
from api.schemas import UserCreate, UserUpdate
from models.tables import User


def supervisor_problem(session: Session, user_id: int | None, supervisor_id: int) -> str | None:
    """Why `supervisor_id` cannot supervise `user_id` (unknown, the user itself, or a loop), or None."""
    seen = {user_id}
    current: int | None = supervisor_id
    while current is not None:
        if current in seen:
            if supervisor_id == user_id:
                return "would make the user their own supervisor"
            if current != user_id:
                return f"the supervisors above user {supervisor_id} go round in a circle already"
            above = session.get(User, supervisor_id)
            return (f"{above.name} (user {supervisor_id}) is supervised by this user, directly or through others: "
                    "supervisors would go round in a circle")
        seen.add(current)
        row = session.get(User, current)
        if row is None:
            return f"user {current} does not exist" if current == supervisor_id else None
        current = row.supervisor_id
    return None


def _check_supervisor(session: Session, user_id: int | None, supervisor_id: int | None) -> None:
    problems = Problems()
    problem = supervisor_problem(session, user_id, supervisor_id) if supervisor_id is not None else None
    if problem:
        problems.add(("body", "supervisor_id"), problem)
    problems.raise_if_any()


def create_user(session: Session, body: UserCreate) -> User:
    """A new user; a supervisor named must exist."""
    _check_supervisor(session, None, body.supervisor_id)
    user = User.model_validate(body)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def update_user(session: Session, user: User, body: UserUpdate) -> User:
    """The fields given change; a supervisor named must exist and must not close a loop of supervisors."""
    changes = body.model_dump(exclude_unset=True)
    _check_supervisor(session, user.id, changes.get("supervisor_id"))
    user.sqlmodel_update(changes)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def users_by_name(session: Session) -> list[User]:
    """Every user, by name: the choices of a form that names one."""
    return list(session.exec(select(User).order_by(User.name, User.id)).all())
