"""Documents made by rules: metadata, the rendered PDF and DOCX, their public links and signing links."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from activities.signing import revoke_signing
from api.deps import MAX_ID, PageDep, SessionDep, SettingsDep, member_only, paginate
from api.errors import not_found
from api.lookups import ItemRefDep, of_item
from api.schemas import DocumentPublic
from models.settings import Settings
from models.tables import Document

router = APIRouter(prefix="/documents", tags=["documents"], dependencies=member_only)
DocumentId = Annotated[int, Path(ge=1, le=MAX_ID)]

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def public_link(settings: Settings, document: Document) -> str | None:
    if not document.public_token or document.public_revoked:
        return None
    return f"{settings.effective_public_url}/public/documents/{document.public_token}"


FILES = ("pdf", "docx", "signed_pdf")
WITHOUT_FILES = [defer(getattr(Document, name)) for name in FILES]


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


def file_response(content: bytes | None, media_type: str, filename: str, *, inline: bool = False) -> Response:
    if content is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"{filename} has not been rendered")
    disposition = "inline" if inline else "attachment"
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'{disposition}; filename="{filename}"', "Cache-Control": "private, no-store"},
    )


def safe_filename(document: Document) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in document.number) or f"document-{document.id}"


def get_document(session: Session, document_id: int, *, files: bool = True) -> Document:
    document = session.get(Document, document_id, options=None if files else WITHOUT_FILES)
    if document is None:
        raise not_found("Document", document_id)
    return document


@router.get("", response_model=list[DocumentPublic])
def list_documents(session: SessionDep, settings: SettingsDep, page: PageDep, response: Response, item: ItemRefDep):
    statement = of_item(select(Document), Document.item_id, item).options(*WITHOUT_FILES).order_by(Document.id)
    return documents_public(session, settings, paginate(session, statement, page, response))


@router.get("/{document_id}", response_model=DocumentPublic)
def read_document(document_id: DocumentId, session: SessionDep, settings: SettingsDep):
    return documents_public(session, settings, [get_document(session, document_id, files=False)])[0]


PDF_RESPONSE = {200: {"content": {PDF: {}}, "description": "The PDF"}, 404: {"description": "Not rendered"}}
DOCX_RESPONSE = {200: {"content": {DOCX: {}}, "description": "The DOCX"}, 404: {"description": "Not rendered"}}


@router.get("/{document_id}/pdf", response_class=Response, responses=PDF_RESPONSE)
def document_pdf(document_id: DocumentId, session: SessionDep):
    document = get_document(session, document_id)
    return file_response(document.pdf, PDF, f"{safe_filename(document)}.pdf")


@router.get("/{document_id}/docx", response_class=Response, responses=DOCX_RESPONSE)
def document_docx(document_id: DocumentId, session: SessionDep):
    document = get_document(session, document_id)
    return file_response(document.docx, DOCX, f"{safe_filename(document)}.docx")


@router.get("/{document_id}/signed-pdf", response_class=Response, responses=PDF_RESPONSE)
def document_signed_pdf(document_id: DocumentId, session: SessionDep):
    """The signed PDF, once every signer has signed."""
    document = get_document(session, document_id)
    return file_response(document.signed_pdf, PDF, f"{safe_filename(document)}-signed.pdf")


@router.post("/{document_id}/revoke-link", response_model=DocumentPublic)
def revoke_public_link(document_id: DocumentId, session: SessionDep, settings: SettingsDep):
    """Close the document's public link for good."""
    document = get_document(session, document_id, files=False)
    if not document.public_revoked:
        document.public_revoked = True
        session.add(document)
        session.commit()
    return documents_public(session, settings, [document])[0]


@router.post("/{document_id}/revoke-signing", response_model=DocumentPublic)
def revoke_signing_links(document_id: DocumentId, session: SessionDep, settings: SettingsDep):
    """Close the document's signing links for good: each answers 404 from now on. Signatures given stay."""
    document = get_document(session, document_id, files=False)
    if not (document.signing or {}).get("signers"):
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT, detail=f"Document {document.number} was not sent for signing"
        )
    revoke_signing(session, document, datetime.now(timezone.utc))
    session.commit()
    session.refresh(document)
    return documents_public(session, settings, [document])[0]
