"""Documents made by rules: metadata, the rendered PDF and DOCX, their public links and signing links."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlmodel import select

from api.deps import MAX_ID, PageDep, SessionDep, SettingsDep, member_only, paginate
from api.files import DOCX, PDF, file_response, safe_filename
from api.lookups import ItemRefDep, of_item
from api.schemas import DocumentPublic
from api.usecases import documents
from api.usecases.documents import WITHOUT_FILES, documents_public, get_document
from models.tables import Document

router = APIRouter(prefix="/documents", tags=["documents"], dependencies=member_only)
DocumentId = Annotated[int, Path(ge=1, le=MAX_ID)]


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
    document = documents.revoke_public_link(session, get_document(session, document_id, files=False))
    return documents_public(session, settings, [document])[0]


@router.post("/{document_id}/revoke-signing", response_model=DocumentPublic)
def revoke_signing_links(document_id: DocumentId, session: SessionDep, settings: SettingsDep):
    """Close the document's signing links for good: each answers 404 from now on. Signatures given stay."""
    document = documents.revoke_signing_links(session, get_document(session, document_id, files=False))
    return documents_public(session, settings, [document])[0]
