"""Public document links: no key, an unguessable token. Opening one is a `document_opened` event."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from api.deps import ClientDep, SessionDep, SettingsDep
from api.files import PDF, document_file
from api.pages import pages
from api.usecases.documents import open_shared_document

router = APIRouter(prefix="/public", tags=["public"])
Token = Annotated[str, Path(min_length=8, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")]


@router.get(
    "/documents/{token}",
    response_class=Response,
    responses={200: {"content": {PDF: {}, "text/html": {}}, "description": "The PDF, or a page with links"}},
)
async def open_document(
    token: Token,
    request: Request,
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
    view: Annotated[Literal["pdf", "html"], Query(description="`html`: a page with download links")] = "pdf",
):
    document = await open_shared_document(session, client, settings, token)
    if view == "html":
        context = {"title": document.title or document.number, "number": document.number,
                   "base": f"/public/documents/{token}", "has_pdf": document.pdf is not None,
                   "has_docx": document.docx is not None}
        return pages.TemplateResponse(request, "shared_document.html", context, headers={"Cache-Control": "no-store"})
    return document_file(document, "pdf", inline=True)


@router.get("/documents/{token}/{kind}", response_class=Response)
async def download_document(
    token: Token, kind: Literal["pdf", "docx"], session: SessionDep, client: ClientDep, settings: SettingsDep
):
    document = await open_shared_document(session, client, settings, token)
    return document_file(document, kind)
