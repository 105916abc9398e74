"""Public document links: no key, an unguessable token. Opening one is a `document_opened` event."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from fastapi.responses import HTMLResponse
from sqlmodel import Session, select

from api.deps import ClientDep, SessionDep, SettingsDep
from api.events import send_once
from api.routes.documents import DOCX, PDF, file_response, safe_filename
from models.domain.timing import as_utc
from models.tables import Document

router = APIRouter(prefix="/public", tags=["public"])
Token = Annotated[str, Path(min_length=8, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")]
GONE = "This link does not exist, was revoked or has expired"


def shared_document(session: Session, token: str) -> Document:
    document = session.exec(select(Document).where(Document.public_token == token)).first()
    expired = document is not None and document.public_expires_at is not None and (
        as_utc(document.public_expires_at) <= datetime.now(timezone.utc)
    )
    if document is None or document.public_revoked or expired:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=GONE)
    return document


async def record_opening(session: Session, client, settings, document: Document) -> None:
    await send_once(
        session,
        client,
        settings,
        document.item_id,
        key=f"document-{document.id}-opened",
        event_type="document_opened",
        data={"document_id": document.id, "template": document.template, "number": document.number},
        text=f"The client opened document {document.number}",
    )


def _page(document: Document, base: str) -> str:
    title = html.escape(document.title or document.number)
    links = []
    if document.pdf is not None:
        links.append(f'<li><a href="{html.escape(base)}/pdf">Download PDF</a></li>')
    if document.docx is not None:
        links.append(f'<li><a href="{html.escape(base)}/docx">Download DOCX</a></li>')
    body = "<ul>" + "".join(links) + "</ul>" if links else "<p>The document is being prepared; try again shortly.</p>"
    return (
        '<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">'
        f"<title>{title}</title></head><body><h1>{title}</h1>"
        f"<p>Document {html.escape(document.number)}</p>{body}</body></html>"
    )


@router.get(
    "/documents/{token}",
    response_class=Response,
    responses={200: {"content": {PDF: {}, "text/html": {}}, "description": "The PDF, or a page with links"}},
)
async def open_document(
    token: Token,
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
    view: Annotated[Literal["pdf", "html"], Query(description="`html`: a page with download links")] = "pdf",
):
    document = shared_document(session, token)
    await record_opening(session, client, settings, document)
    if view == "html":
        return HTMLResponse(_page(document, f"/public/documents/{token}"), headers={"Cache-Control": "no-store"})
    return file_response(document.pdf, PDF, f"{safe_filename(document)}.pdf", inline=True)


@router.get("/documents/{token}/{kind}", response_class=Response)
async def download_document(
    token: Token, kind: Literal["pdf", "docx"], session: SessionDep, client: ClientDep, settings: SettingsDep
):
    document = shared_document(session, token)
    await record_opening(session, client, settings, document)
    if kind == "docx":
        return file_response(document.docx, DOCX, f"{safe_filename(document)}.docx")
    return file_response(document.pdf, PDF, f"{safe_filename(document)}.pdf")
