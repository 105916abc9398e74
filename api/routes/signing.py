"""Signing links (no key): a one-time link per signer and one-time codes (`api/usecases/signing.py`).

`GET /sign/{token}` shows the document and marks it viewed; `POST /sign/{token}/code` sends the signer a six-digit
code by e-mail or SMS; `POST /sign/{token}` with that code signs. The forms post
`application/x-www-form-urlencoded` and get the page back (`templates/pages/signing.html`); JSON bodies get JSON
answers. An expired or revoked link answers every route here with the same 404 as a token nobody was given.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from sqlmodel import Session

from activities.services.signing import link_valid_until
from api.deps import ClientDep, SessionDep, SettingsDep
from api.files import PDF, file_response, safe_filename
from api.pages import pages
from api.usecases import signing
from api.usecases.signing import CODE_DIGITS, ROLES, Refused, mask
from models.domain.timing import as_utc
from models.tables import Document, DocumentSigner

router = APIRouter(prefix="/sign", tags=["signing"])
Token = Annotated[str, Path(min_length=20, max_length=200)]
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


class SignBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, StringConstraints(strip_whitespace=True, pattern=rf"^[0-9]{{{CODE_DIGITS}}}$")]


async def _wants_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


def _html(request: Request, session: Session, signer: DocumentSigner, document: Document, *, notice: str = "",
          error: str = "", status_code: int = 200) -> HTMLResponse:
    session.refresh(document)
    session.refresh(signer)
    data = document.data or {}
    signed = signer.status == "signed"
    context = {
        "title": f"{document.title} {document.number}",
        "signer": signer,
        "role": ROLES.get(signer.role, ""),
        "seller": str((data.get("seller") or {}).get("name") or ""),
        "buyer": str((data.get("buyer") or {}).get("name") or ""),
        "issued_on": str(data.get("issued_on", "")),
        "total": f"{data.get('total', '')} {data.get('currency', '')}".strip(),
        "base": f"/sign/{signer.token}",
        "signers": [
            {"name": entry.get("name") or "", "role": ROLES.get(entry.get("role"), entry.get("role") or ""),
             "status": entry.get("status") or ""}
            for entry in (document.signing or {}).get("signers") or []
        ],
        "notice": notice,
        "error": error,
        "signed_at": as_utc(signer.signed_at).strftime("%Y-%m-%d %H:%M UTC") if signed else "",
        "has_signed_pdf": document.signed_pdf is not None,
        "masked_address": mask(signer.address),
        "digits": CODE_DIGITS,
        "valid_until": link_valid_until(signer) if signer.link_expires_at is not None and not signed else "",
    }
    return pages.TemplateResponse(request, "signing.html", context, status_code=status_code, headers=HEADERS)


@router.get("/{token}", response_class=HTMLResponse)
async def signing_page(token: Token, request: Request, session: SessionDep, client: ClientDep, settings: SettingsDep):
    """The document's summary, a link to its PDF, and the forms to get a code and sign."""
    signer, document = signing.find_signer(session, token)
    signing.mark_viewed(session, signer, document)
    await signing.complete(session, client, settings, document.id)
    return _html(request, session, signer, document)


@router.get("/{token}/pdf", response_class=Response, responses={200: {"content": {PDF: {}}}})
def signing_pdf(token: Token, session: SessionDep):
    _, document = signing.find_signer(session, token)
    return file_response(document.pdf, PDF, f"{safe_filename(document)}.pdf", inline=True)


@router.get("/{token}/signed.pdf", response_class=Response, responses={200: {"content": {PDF: {}}}})
def signed_pdf(token: Token, session: SessionDep):
    _, document = signing.find_signer(session, token)
    return file_response(document.signed_pdf, PDF, f"{safe_filename(document)}-signed.pdf")


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
    signer, document = signing.find_signer(session, token)
    as_json = await _wants_json(request)
    try:
        sent = await signing.send_code(session, settings, request.app.state.engine, signer, document)
    except Refused as refused:
        if as_json:
            return _json_refusal(refused)
        return _html(request, session, signer, document, error=refused.message, status_code=refused.status_code)
    if as_json:
        return JSONResponse(sent, status_code=status.HTTP_202_ACCEPTED, headers=HEADERS)
    return _html(request, session, signer, document, notice=f"We sent a code to {sent['sent_to']}.")


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
    signer, document = signing.find_signer(session, token)
    as_json = await _wants_json(request)
    try:
        signing.check_code(session, signer, await _code_from(request, as_json))
    except Refused as refused:
        if as_json:
            return _json_refusal(refused)
        return _html(request, session, signer, document, error=refused.message, status_code=refused.status_code)
    signing.sign(session, signer, document)
    await signing.complete(session, client, settings, document.id)
    session.refresh(document)
    answer = {"status": "signed", "document_id": document.id, "document_status": document.signing.get("status")}
    if as_json:
        return JSONResponse(answer, headers=HEADERS)
    return _html(request, session, signer, document, notice="Thank you: you signed the document.")
