"""Documents made by rules: reading them (with which files they have, without loading the files), closing their
public and signing links, and a client opening one through its public link (a `document_opened` event, once)."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import HTTPException, status
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select
from temporalio.client import Client

from activities.services.signing import revoke_signing
from api.errors import not_found
from api.schemas import DocumentPublic
from api.usecases.items import send_once
from models.domain.events import DocumentOpened
from models.domain.timing import as_utc
from models.settings import Settings
from models.tables import Document

FILES = ("pdf", "docx", "signed_pdf")
WITHOUT_FILES = [defer(getattr(Document, name)) for name in FILES]
GONE = "This link does not exist, was revoked or has expired"


def get_document(session: Session, document_id: int, *, files: bool = True) -> Document:
    """The document; without loading its files unless `files`."""
    document = session.get(Document, document_id, options=None if files else WITHOUT_FILES)
    if document is None:
        raise not_found("Document", document_id)
    return document


def public_link(settings: Settings, document: Document) -> str | None:
    if not document.public_token or document.public_revoked:
        return None
    return f"{settings.effective_public_url}/public/documents/{document.public_token}"


def _file_flags(session: Session, ids: list[int]) -> dict[int, dict[str, bool]]:
    """Which files each document has, without loading them."""
    columns = [col(getattr(Document, name)).is_not(None) for name in FILES]
    rows = session.exec(select(Document.id, *columns).where(col(Document.id).in_(ids))).all()
    return {row[0]: {f"has_{name}": bool(flag) for name, flag in zip(FILES, row[1:])} for row in rows}


def documents_public(session: Session, settings: Settings, documents: list[Document]) -> list[DocumentPublic]:
    flags = _file_flags(session, [document.id for document in documents])
    return [
        DocumentPublic.model_validate(
            document, update={**flags[document.id], "public_url": public_link(settings, document)}
        )
        for document in documents
    ]


def revoke_public_link(session: Session, document: Document) -> Document:
    """Closes the document's public link for good."""
    if not document.public_revoked:
        document.public_revoked = True
        session.add(document)
        session.commit()
    return document


def revoke_signing_links(session: Session, document: Document) -> Document:
    """Closes the document's signing links for good: each answers 404 from then on. Signatures given stay."""
    if not (document.signing or {}).get("signers"):
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT, detail=f"Document {document.number} was not sent for signing"
        )
    revoke_signing(session, document, datetime.now(timezone.utc))
    session.commit()
    session.refresh(document)
    return document


def shared_document(session: Session, token: str) -> Document:
    """The document a public link names, while the link is open; 404 like an unknown link otherwise."""
    document = session.exec(select(Document).where(Document.public_token == token)).first()
    expired = document is not None and document.public_expires_at is not None and (
        as_utc(document.public_expires_at) <= datetime.now(timezone.utc)
    )
    if document is None or document.public_revoked or expired:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=GONE)
    return document


async def open_shared_document(session: Session, client: Client, settings: Settings, token: str) -> Document:
    """A client opens a public link: the document, and the first opening is a `document_opened` event."""
    document = shared_document(session, token)
    await send_once(
        session, client, settings, document.item_id, key=f"document-{document.id}-opened",
        event=DocumentOpened.of(document), text=f"The client opened document {document.number}",
    )
    return document
