"""Signing links: no key, a one-time link per signer (`/sign/<token>`) and one-time codes.

`GET /sign/{token}` shows the document and marks it viewed; `POST /sign/{token}/code` sends the signer
a six-digit code by e-mail or SMS; `POST /sign/{token}` with that code signs. Codes are stored as
salted hashes, expire, and allow a few attempts. When every signer has signed, the signed PDF (the
original pages and a certificate with the original's SHA-256) is stored and the item gets a
`document_signed` event. The forms post `application/x-www-form-urlencoded` and get HTML back; JSON
bodies get JSON answers.

A link is open until its `link_expires_at` (the rule's `link_expires_days`) and until
`POST /documents/{id}/revoke-signing`; an expired or revoked link answers every route here with the same 404
as a token nobody was given, and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from sqlalchemy import update
from sqlmodel import Session, col, select

from activities.document_store import utc
from activities.rendering import InvalidDocumentData, render_signed_pdf
from activities.signing import DeliveryFailed, deliver, link_valid_until, refresh_signing
from activities.transports.mail import MailTemporaryError
from activities.transports.sms import SmsTemporaryError
from api.deps import ClientDep, SessionDep, SettingsDep
from api.events import send_once
from api.routes.documents import PDF, file_response, safe_filename
from models.settings import Settings
from models.store import add_timeline
from models.tables import Document, DocumentSigner

router = APIRouter(prefix="/sign", tags=["signing"])
Token = Annotated[str, Path(min_length=20, max_length=200)]

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
CODE_MAX_ATTEMPTS = 5
CODE_RESEND_SECONDS = 30
CODES_PER_SIGNER = 10
GONE = "This signing link does not exist, was revoked or has expired"
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
ROLES = {"company": "for the seller", "client": "for the client"}


class SignBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, StringConstraints(strip_whitespace=True, pattern=rf"^[0-9]{{{CODE_DIGITS}}}$")]


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
    return signer.link_expires_at is None or utc(signer.link_expires_at) > now


def _find(session: Session, token: str) -> tuple[DocumentSigner, Document]:
    signer = session.exec(select(DocumentSigner).where(DocumentSigner.token == token)).first()
    document = session.get(Document, signer.document_id) if signer is not None else None
    if signer is None or document is None or not link_open(signer, _now()):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=GONE)
    return signer, document


async def _wants_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


# -- the page ------------------------------------------------------------------------------------


def _page(document: Document, signer: DocumentSigner, base: str, notice: str = "", error: str = "") -> str:
    esc = html.escape
    data = document.data or {}
    signers = (document.signing or {}).get("signers") or []
    rows = "".join(
        f"<li>{esc(entry.get('name') or '')} ({esc(ROLES.get(entry.get('role'), entry.get('role') or ''))}): "
        f"{esc(entry.get('status') or '')}</li>"
        for entry in signers
    )
    if signer.status == "signed":
        action = f"<p>You signed this document at {esc(utc(signer.signed_at).strftime('%Y-%m-%d %H:%M UTC'))}.</p>"
        if document.signed_pdf is not None:
            action += f'<p><a href="{esc(base)}/signed.pdf">Download the signed PDF</a></p>'
    else:
        action = (
            f'<form method="post" action="{esc(base)}/code"><p>We send a one-time code to '
            f"{esc(mask(signer.address))}.</p><button type=\"submit\">Send me a code</button></form>"
            f'<form method="post" action="{esc(base)}"><label>Code <input name="code" inputmode="numeric" '
            f'pattern="[0-9]{{{CODE_DIGITS}}}" maxlength="{CODE_DIGITS}" autocomplete="one-time-code" required>'
            '</label> <button type="submit">Sign</button></form>'
        )
        if signer.link_expires_at is not None:
            action += f"<p>This link is valid until {esc(link_valid_until(signer))}.</p>"
    title = esc(f"{document.title} {document.number}")
    seller = esc(str((data.get("seller") or {}).get("name") or ""))
    buyer = esc(str((data.get("buyer") or {}).get("name") or ""))
    total = esc(f"{data.get('total', '')} {data.get('currency', '')}".strip())
    return (
        '<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">'
        f"<title>Sign {title}</title></head><body><h1>{title}</h1>"
        f"<p>Dear {esc(signer.name)}, please read the document and sign it {esc(ROLES.get(signer.role, ''))}.</p>"
        f"<table><tr><th>Seller</th><td>{seller}</td></tr><tr><th>Client</th><td>{buyer}</td></tr>"
        f"<tr><th>Issued</th><td>{esc(str(data.get('issued_on', '')))}</td></tr>"
        f"<tr><th>Total</th><td>{total}</td></tr></table>"
        f'<p><a href="{esc(base)}/pdf">Read the document (PDF)</a></p>'
        f"<h2>Signatures</h2><ul>{rows}</ul>"
        + (f'<p role="status">{esc(notice)}</p>' if notice else "")
        + (f'<p role="alert">{esc(error)}</p>' if error else "")
        + f"{action}</body></html>"
    )


def _html(session: Session, signer: DocumentSigner, document: Document, *, notice: str = "", error: str = "",
          status_code: int = 200) -> HTMLResponse:
    session.refresh(document)
    session.refresh(signer)
    return HTMLResponse(
        _page(document, signer, f"/sign/{signer.token}", notice, error), status_code=status_code, headers=HEADERS
    )


def _mark_viewed(session: Session, signer: DocumentSigner, document: Document) -> None:
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


@router.get("/{token}", response_class=HTMLResponse)
async def signing_page(token: Token, session: SessionDep, client: ClientDep, settings: SettingsDep):
    """The document's summary, a link to its PDF, and the forms to get a code and sign."""
    signer, document = _find(session, token)
    _mark_viewed(session, signer, document)
    await _complete(session, client, settings, document.id)
    return _html(session, signer, document)


@router.get("/{token}/pdf", response_class=Response, responses={200: {"content": {PDF: {}}}})
def signing_pdf(token: Token, session: SessionDep):
    _, document = _find(session, token)
    return file_response(document.pdf, PDF, f"{safe_filename(document)}.pdf", inline=True)


@router.get("/{token}/signed.pdf", response_class=Response, responses={200: {"content": {PDF: {}}}})
def signed_pdf(token: Token, session: SessionDep):
    _, document = _find(session, token)
    return file_response(document.signed_pdf, PDF, f"{safe_filename(document)}-signed.pdf")


# -- one-time codes ------------------------------------------------------------------------------


def _issue_code(session: Session, signer: DocumentSigner) -> str:
    if signer.status == "signed":
        raise Refused(status.HTTP_409_CONFLICT, "You have already signed this document")
    now = _now()
    if signer.last_code_at is not None:
        wait = CODE_RESEND_SECONDS - int((now - utc(signer.last_code_at)).total_seconds())
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


async def _send_code(session: Session, settings: Settings, request: Request, signer: DocumentSigner,
                     document: Document) -> dict[str, Any]:
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
            settings, request.app.state.engine, key=f"signing-{signer.id}-code-{signer.codes_sent}",
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
            "expires_at": utc(signer.code_expires_at).isoformat()}


def _json_refusal(refused: Refused) -> JSONResponse:
    detail: Any = refused.message
    if refused.field is not None:
        detail = [{"type": "value_error", "loc": ["body", refused.field], "msg": refused.message}]
    headers = {**HEADERS, **({"Retry-After": str(refused.retry_after)} if refused.retry_after else {})}
    return JSONResponse({"detail": detail}, status_code=refused.status_code, headers=headers)


EMPTY_BODY = {"requestBody": {"required": False, "content": {
    "application/json": {"schema": {"type": "object"}},
    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
}}}
CODE_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": SignBody.model_json_schema()},
    "application/x-www-form-urlencoded": {"schema": SignBody.model_json_schema()},
}}}


@router.post("/{token}/code", status_code=status.HTTP_202_ACCEPTED, openapi_extra=EMPTY_BODY)
async def request_code(token: Token, request: Request, session: SessionDep, settings: SettingsDep):
    """Send a one-time code to the signer (their e-mail or phone); it expires after ten minutes."""
    signer, document = _find(session, token)
    as_json = await _wants_json(request)
    try:
        sent = await _send_code(session, settings, request, signer, document)
    except Refused as refused:
        if as_json:
            return _json_refusal(refused)
        return _html(session, signer, document, error=refused.message, status_code=refused.status_code)
    if as_json:
        return JSONResponse(sent, status_code=status.HTTP_202_ACCEPTED, headers=HEADERS)
    return _html(session, signer, document, notice=f"We sent a code to {sent['sent_to']}.")


# -- signing -------------------------------------------------------------------------------------


def _check_code(session: Session, signer: DocumentSigner, code: str) -> None:
    if signer.status == "signed":
        raise Refused(status.HTTP_409_CONFLICT, "You have already signed this document")
    if signer.code_hash is None or signer.code_salt is None:
        raise Refused(status.HTTP_422_UNPROCESSABLE_CONTENT, "Ask for a code first", field="code")
    if utc(signer.code_expires_at) <= _now():
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


def _sign(session: Session, signer: DocumentSigner, document: Document) -> None:
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
            "signed_at": utc(signer.signed_at),
        }
        for signer in signers
    ]


async def _complete(session: Session, client, settings: Settings, document_id: int) -> None:
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
        event_type="document_signed",
        data={"document_id": document.id, "template": document.template, "number": document.number},
        text=f"Document {document.number} signed by every signer",
    )


async def _code_from(request: Request, as_json: bool) -> str:
    if as_json:
        try:
            raw = await request.json()
        except ValueError:
            raise Refused(status.HTTP_422_UNPROCESSABLE_CONTENT, "the body is not JSON", field="code") from None
    else:
        raw = dict(await request.form())
    try:
        return SignBody.model_validate(raw).code
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"]) or "code"
        raise Refused(status.HTTP_422_UNPROCESSABLE_CONTENT,
                      f"{field}: give the {CODE_DIGITS}-digit code you received", field=field) from None


@router.post("/{token}", openapi_extra=CODE_BODY)
async def sign(token: Token, request: Request, session: SessionDep, client: ClientDep, settings: SettingsDep):
    """Sign with the one-time code: `{"code": "123456"}` (or the page's form)."""
    signer, document = _find(session, token)
    as_json = await _wants_json(request)
    try:
        _check_code(session, signer, await _code_from(request, as_json))
    except Refused as refused:
        if as_json:
            return _json_refusal(refused)
        return _html(session, signer, document, error=refused.message, status_code=refused.status_code)
    _sign(session, signer, document)
    await _complete(session, client, settings, document.id)
    session.refresh(document)
    answer = {"status": "signed", "document_id": document.id, "document_status": document.signing.get("status")}
    if as_json:
        return JSONResponse(answer, headers=HEADERS)
    return _html(session, signer, document, notice="Thank you: you signed the document.")
