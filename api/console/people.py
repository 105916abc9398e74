"""People in the console: the CRM's users (who deals and leads are given to, who supervises whom), listed for
everyone and added by an admin through the use case of `POST /users`."""

from __future__ import annotations


from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlmodel import Session

from api.console import forms
from api.console.pages import ChangeDep, UserDep, back, page
from api.console.session import ConsoleUser, require_admin
from api.deps import SessionDep
from api.schemas import UserCreate
from api.usecases import users as usecase

router = APIRouter()
FIELDS = ("name", "email", "phone", "supervisor_id")
LABELS = {"name": "Name", "email": "E-mail", "phone": "Phone", "supervisor_id": "Supervisor"}


def _people(request: Request, user: ConsoleUser, session: Session, *, values: dict[str, str],
            errors: dict[str, str], added: str = "", status_code: int = status.HTTP_200_OK) -> HTMLResponse:
    people = usecase.users_by_name(session)
    names = {person.id: person.name for person in people}
    just_added = names.get(forms.form_id(added))
    return page(request, "people.html", user, status_code=status_code, people=people, names=names, values=values,
                errors=errors, added=just_added)


@router.get("/people", response_class=HTMLResponse)
def people(request: Request, user: UserDep, session: SessionDep, added: str = ""):
    return _people(request, user, session, values={}, errors={}, added=added)


@router.post("/people", response_class=HTMLResponse)
async def add_person(request: Request, user: ChangeDep, session: SessionDep):
    """A new user, checked as `POST /users` checks one; refused, the form comes back with what was typed."""
    require_admin(user)
    form = await request.form()
    values, body = forms.typed_values(form, FIELDS)
    try:
        created = usecase.create_user(session, UserCreate.model_validate(body))
    except (ValidationError, HTTPException) as error:
        code, errors = forms.refusal_in_form(error, LABELS)
        return _people(request, user, session, values=values, errors=errors, status_code=code)
    return back(f"/ui/people?added={created.id}")
