"""Signing a document through its signing links: a one-time link per signer (`/sign/<token>`), one-time codes
sent by e-mail or SMS, the signature, and, once every signer has signed, the signed PDF and the `document_signed`
event (each once).

Codes are stored as salted hashes, expire, and allow a few attempts. A link is open until its `link_expires_at`
(the rule's `link_expires_days`) and until `POST /documents/{id}/revoke-signing`; an expired or revoked link is
refused like a token nobody was given, and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import HTTPException, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client

from activities.services.documents import InvalidDocumentData, render_signed_pdf
from activities.services.signing import DeliveryFailed, deliver, refresh_signing
from activities.transports.mail import MailTemporaryError
from activities.transports.sms import SmsTemporaryError
from api.usecases.items import send_once
from models.domain.events import DocumentSigned
from models.domain.timing import as_utc
from models.settings import Settings
from models.store import add_timeline
from models.tables import Document, DocumentSigner

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
CODE_MAX_ATTEMPTS = 5
CODE_RESEND_SECONDS = 30
CODES_PER_SIGNER = 10
GONE = "This signing link does not exist, was revoked or has expired"
ROLES = {"company": "for the seller", "client": "for the client"}


class Refused(Exception):
    """A signing step refused: the status code and the message for the signer."""

    def __init__(self, status_code: int, message: str, *, field: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status_code, self.message, self.field, self.retry_after = status_code, message, field, retry_after


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _hash(salt: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


def mask(address: str) -> str:
    """Enough of an address for the signer to recognise it: j***@example.com, +48*******567."""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return address[:3] + "*" * max(len(address) - 6, 0) + address[-3:]


def link_open(signer: DocumentSigner, now: datetime) -> bool:
    if signer.link_revoked_at is not None:
        return False
    return signer.link_expires_at is None or as_utc(signer.link_expires_at) > now


def find_signer(session: Session, token: str) -> tuple[DocumentSigner, Document]:
    """The signer a signing link names and the document; 404 for a link that is unknown, expired or revoked."""
    signer = session.exec(select(DocumentSigner).where(DocumentSigner.token == token)).first()
    document = session.get(Document, signer.document_id) if signer is not None else None
    if signer is None or document is None or not link_open(signer, _now()):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=GONE)
    return signer, document


def mark_viewed(session: Session, signer: DocumentSigner, document: Document) -> None:
    """The signer opened the signing page: viewed (once), on the item's timeline."""
    if signer.status not in ("pending", "sent"):
        return
    signer.status, signer.viewed_at = "viewed", _now()
    session.add(signer)
    if document.item_id is not None:
        add_timeline(
            session, document.item_id, "document_viewed",
            f"{signer.name} ({signer.role}) opened document {document.number} for signing",
            key=f"document-{document.id}/signer-{signer.id}/viewed", document_id=document.id, signer=signer.name,
            role=signer.role,
        )
    refresh_signing(session, document.id)
    session.commit()


def _issue_code(session: Session, signer: DocumentSigner) -> str:
    if signer.status == "signed":
        raise Refused(status.HTTP_409_CONFLICT, "You have already signed this document")
    now = _now()
    if signer.last_code_at is not None:
        wait = CODE_RESEND_SECONDS - int((now - as_utc(signer.last_code_at)).total_seconds())
        if wait > 0:
            raise Refused(status.HTTP_429_TOO_MANY_REQUESTS, f"A code was just sent; ask again in {wait} s",
                          retry_after=wait)
    if signer.codes_sent >= CODES_PER_SIGNER:
        raise Refused(status.HTTP_429_TOO_MANY_REQUESTS, "Too many codes were sent for this link; contact the sender")
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    signer.code_salt = secrets.token_hex(16)
    signer.code_hash = _hash(signer.code_salt, code)
    signer.code_expires_at = now + CODE_TTL
    signer.code_attempts = 0
    signer.codes_sent += 1
    signer.last_code_at = now
    session.add(signer)
    session.commit()
    return code


async def send_code(session: Session, settings: Settings, database: Engine, signer: DocumentSigner,
                    document: Document) -> dict[str, Any]:
    """A new one-time code to the signer, by their channel: where it went and until when it is good."""
    code = _issue_code(session, signer)
    minutes = int(CODE_TTL.total_seconds() // 60)
    what = f"{document.title} {document.number}"
    subject = f"Your signing code for {what}"
    if signer.channel == "sms":
        text = f"{code} is your code to sign {what}. It is valid for {minutes} minutes."
    else:
        text = (f"Hello {signer.name},\n\nyour one-time code to sign {what} is {code}.\n"
                f"It is valid for {minutes} minutes. Do not share it with anyone.")
    recorded = text.replace(code, "*" * CODE_DIGITS)
    try:
        await deliver(
            settings, database, key=f"signing-{signer.id}-code-{signer.codes_sent}",
            item_id=document.item_id, channel=signer.channel, to=signer.address, subject=subject, text=text,
            recorded_text=recorded,
        )
    except DeliveryFailed as error:
        raise Refused(status.HTTP_502_BAD_GATEWAY, f"The code could not be sent: {error}") from None
    except (MailTemporaryError, SmsTemporaryError):
        signer.last_code_at = None
        session.add(signer)
        session.commit()
        raise Refused(status.HTTP_503_SERVICE_UNAVAILABLE, "The code could not be sent right now; try again shortly")
    return {"sent_to": mask(signer.address), "channel": signer.channel,
            "expires_at": as_utc(signer.code_expires_at).isoformat()}


def check_code(session: Session, signer: DocumentSigner, code: str) -> None:
    if signer.status == "signed":
        raise Refused(status.HTTP_409_CONFLICT, "You have already signed this document")
    if signer.code_hash is None or signer.code_salt is None:
        raise Refused(status.HTTP_422_UNPROCESSABLE_CONTENT, "Ask for a code first", field="code")
    if as_utc(signer.code_expires_at) <= _now():
        signer.code_hash = signer.code_salt = None
        session.add(signer)
        session.commit()
        raise Refused(status.HTTP_422_UNPROCESSABLE_CONTENT, "The code has expired; ask for a new one", field="code")
    if hmac.compare_digest(_hash(signer.code_salt, code), signer.code_hash):
        return
    signer.code_attempts += 1
    left = CODE_MAX_ATTEMPTS - signer.code_attempts
    if left <= 0:
        signer.code_hash = signer.code_salt = None
    session.add(signer)
    session.commit()
    if left <= 0:
        raise Refused(status.HTTP_429_TOO_MANY_REQUESTS, "Too many wrong codes; ask for a new one", field="code")
    raise Refused(status.HTTP_422_UNPROCESSABLE_CONTENT, f"Wrong code; {left} attempt(s) left", field="code")


def sign(session: Session, signer: DocumentSigner, document: Document) -> None:
    signer.status, signer.signed_at = "signed", _now()
    signer.code_hash = signer.code_salt = signer.code_expires_at = None
    session.add(signer)
    if document.item_id is not None:
        add_timeline(
            session, document.item_id, "document_signed_by",
            f"Document {document.number} signed by {signer.name} ({signer.role})",
            key=f"document-{document.id}/signer-{signer.id}/signed", document_id=document.id, signer=signer.name,
            role=signer.role, signed_at=signer.signed_at.isoformat(),
        )
    refresh_signing(session, document.id)
    session.commit()


def _signature_entries(signers: list[DocumentSigner]) -> list[dict[str, Any]]:
    return [
        {
            "signer": signer.name,
            "role": f"{ROLES.get(signer.role, signer.role)}, confirmed with a one-time code sent to "
                    f"{mask(signer.address)}",
            "signed_at": as_utc(signer.signed_at),
        }
        for signer in signers
    ]


async def complete(session: Session, client: Client, settings: Settings, document_id: int) -> None:
    """Once every signer has signed: the signed PDF, then the `document_signed` event (each once)."""
    signers = list(session.exec(
        select(DocumentSigner).where(DocumentSigner.document_id == document_id).order_by(DocumentSigner.position)
    ).all())
    if not signers or any(signer.status != "signed" for signer in signers):
        return
    document = session.get(Document, document_id)
    if document.signed_pdf is None:
        try:
            signed = await run_in_threadpool(render_signed_pdf, document.pdf, _signature_entries(signers))
        except InvalidDocumentData as error:
            raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=f"The document cannot be signed: {error}")
        session.execute(
            update(Document).where(col(Document.id) == document_id, col(Document.signed_pdf).is_(None))
            .values(signed_pdf=signed)
        )
        refresh_signing(session, document_id)
        session.commit()
        session.refresh(document)
    await send_once(
        session, client, settings, document.item_id, key=f"document-{document.id}-signed",
        event=DocumentSigned.of(document), text=f"Document {document.number} signed by every signer",
    )
