"""Clients in the console: the contacts deals and leads are for (whom e-mail, SMS and messenger rules reach),
listed for everyone and added by an admin or a member, with their messenger identities, through the use case of
`POST /contacts`."""

from __future__ import annotations


from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlmodel import Session

from api.console import forms
from api.console.pages import ChangeDep, UserDep, back, page
from api.console.session import ConsoleUser
from api.deps import SessionDep
from api.lookups import contacts_by_name
from api.schemas import PartyCreate
from api.usecases.parties import create_party
from models.tables import Contact

router = APIRouter()
FIELDS = ("name", "email", "phone")
CHANNELS = ("telegram", "whatsapp")
"""The messenger identities the form takes: a Telegram chat id, a WhatsApp number."""
LABELS = {"name": "Name", "email": "E-mail", "phone": "Phone", "channels": "Messengers"}


def _clients(request: Request, user: ConsoleUser, session: Session, *, values: dict[str, str],
             errors: dict[str, str], added: str = "", status_code: int = status.HTTP_200_OK) -> HTMLResponse:
    contacts = contacts_by_name(session)
    just_added = next((contact.name for contact in contacts if contact.id == forms.form_id(added)), None)
    return page(request, "clients.html", user, status_code=status_code, contacts=contacts, values=values,
                errors=errors, added=just_added)


@router.get("/clients", response_class=HTMLResponse)
def clients(request: Request, user: UserDep, session: SessionDep, added: str = ""):
    return _clients(request, user, session, values={}, errors={}, added=added)


@router.post("/clients", response_class=HTMLResponse)
async def add_client(request: Request, user: ChangeDep, session: SessionDep):
    """A new contact, checked as `POST /contacts` checks one; refused, the form comes back with what was typed."""
    form = await request.form()
    values, body = forms.typed_values(form, FIELDS)
    channel_values, channels = forms.typed_values(form, CHANNELS)
    values.update(channel_values)
    if channels:
        body["channels"] = channels
    try:
        created = create_party(session, Contact, PartyCreate.model_validate(body))
    except (ValidationError, HTTPException) as error:
        code, errors = forms.refusal_in_form(error, LABELS)
        return _clients(request, user, session, values=values, errors=errors, status_code=code)
    return back(f"/ui/clients?added={created.id}")
