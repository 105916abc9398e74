"""Clients: the contacts and companies of deals and leads. The API's routes and the console's Clients page add them
here."""

from __future__ import annotations

from sqlmodel import Session

from api.schemas import PartyCreate
from models.tables import Company, Contact

Party = Contact | Company


def create_party(session: Session, model: type[Contact] | type[Company], body: PartyCreate) -> Party:
    """A new contact or company, as checked by `PartyCreate`."""
    row = model.model_validate(body)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row

