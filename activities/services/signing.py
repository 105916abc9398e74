"""Signing links and the messages they go out in: each signer's status, revoking the links, and sending one
e-mail or SMS once per key (the signing rule and the signing pages both send through `deliver`).

Each signer gets an unguessable link (`/sign/<token>`); one-time codes are sent from the signing pages and kept
only as salted hashes (never in logs, the timeline, messages or workflow inputs).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from activities.transports.mail import InvalidAddress, MailPermanentError, MailSettings, build_message, send_message
from activities.transports.sms import SmsConfigError, SmsPermanentError, make_sms_provider
from models.db import session_scope
from models.domain.timing import as_utc
from models.settings import Settings
from models.store import add_timeline, get_or_create
from models.tables import Document, DocumentSigner, Message

SIGNER_STATUSES = ("pending", "sent", "viewed", "signed")


def signing_url(settings: Settings, token: str) -> str:
    return f"{settings.effective_public_url}/sign/{token}"


class DeliveryFailed(Exception):
    """The message was refused for good (address, provider, configuration); the Message row says why."""


def _mail_domain(sender: str) -> str:
    return sender.rpartition("@")[2].strip("> ") or "stageflow.local"


async def deliver(
    settings: Settings,
    engine: Engine,
    *,
    key: str,
    item_id: int | None,
    channel: str,
    to: str,
    subject: str,
    text: str,
    recorded_text: str | None = None,
) -> int:
    """Send one e-mail or SMS once per key: the Message row is queued first, then sent, then marked.

    `recorded_text` is what the Message row keeps when the sent text must not be stored (one-time
    codes). Raises DeliveryFailed for permanent refusals; temporary failures propagate for a retry.
    """

    def queue(session: Session) -> tuple[int, str]:
        row, _ = get_or_create(
            session, Message, key, item_id=item_id, channel=channel, to=to,
            subject=subject if channel == "email" else None, body=recorded_text or text, status="queued",
        )
        return row.id, row.status

    def mark(message_id: int, status: str, *, provider_id: str | None = None, error: str | None = None) -> None:
        with session_scope(engine) as session:
            row = session.get(Message, message_id)
            row.status, row.error = status, error
            if provider_id is not None:
                row.provider_id, row.sent_at = provider_id, datetime.now(timezone.utc)
            session.add(row)

    def run_queue() -> tuple[int, str]:
        with session_scope(engine) as session:
            return queue(session)

    message_id, status = await asyncio.to_thread(run_queue)
    if status == "sent":
        return message_id
    try:
        if channel == "email":
            mail = MailSettings.from_settings(settings)
            message = build_message(
                sender=mail.sender, to=to, subject=subject, text=text, message_id_key=key,
                domain=_mail_domain(mail.sender),
            )
            await send_message(mail, message)
            provider_id = str(message["Message-ID"])
        else:
            provider_id = await make_sms_provider(settings).send(to, text, key)
    except (MailPermanentError, SmsPermanentError, InvalidAddress, SmsConfigError) as error:
        await asyncio.to_thread(mark, message_id, "failed", error=str(error)[:500])
        raise DeliveryFailed(str(error)) from error
    await asyncio.to_thread(mark, message_id, "sent", provider_id=provider_id)
    return message_id


def signing_summary(session: Session, document_id: int) -> dict[str, Any]:
    """Document.signing: the overall status and each signer's status with times (no tokens, no codes)."""
    signers = session.exec(
        select(DocumentSigner).where(DocumentSigner.document_id == document_id).order_by(DocumentSigner.position)
    ).all()
    statuses = [signer.status for signer in signers]
    if statuses and all(status == "signed" for status in statuses):
        overall = "signed"
    elif "signed" in statuses:
        overall = "partially_signed"
    else:
        overall = max(statuses, key=SIGNER_STATUSES.index) if statuses else "pending"

    def iso(value: datetime | None) -> str | None:
        return as_utc(value).isoformat() if value is not None else None

    signed_times = [as_utc(signer.signed_at) for signer in signers if signer.signed_at is not None]
    return {
        "status": overall,
        "signed_at": iso(max(signed_times)) if overall == "signed" else None,
        "signers": [
            {
                "id": signer.id,
                "role": signer.role,
                "name": signer.name,
                "channel": signer.channel,
                "to": signer.address,
                "status": signer.status,
                "sent_at": iso(signer.sent_at),
                "viewed_at": iso(signer.viewed_at),
                "signed_at": iso(signer.signed_at),
                "link_expires_at": iso(signer.link_expires_at),
                "link_revoked_at": iso(signer.link_revoked_at),
            }
            for signer in signers
        ],
    }


def refresh_signing(session: Session, document_id: int) -> dict[str, Any]:
    session.flush()
    summary = signing_summary(session, document_id)
    document = session.get(Document, document_id)
    document.signing = summary
    session.add(document)
    return summary


def revoke_signing(session: Session, document: Document, at: datetime) -> int:
    """Closes every signing link of the document that is still open; signatures given stay. How many it closed."""
    signers = session.exec(select(DocumentSigner).where(
        DocumentSigner.document_id == document.id, col(DocumentSigner.link_revoked_at).is_(None)
    )).all()
    for signer in signers:
        signer.link_revoked_at = at
        session.add(signer)
    if signers and document.item_id is not None:
        add_timeline(
            session, document.item_id, "document_signing_revoked",
            f"Signing links of document {document.number} revoked", at=at,
            key=f"document-{document.id}/signing-revoked", document_id=document.id,
        )
    refresh_signing(session, document.id)
    return len(signers)


def link_valid_until(signer: DocumentSigner) -> str:
    return as_utc(signer.link_expires_at).strftime("%Y-%m-%d %H:%M UTC")

