"""The signed PDF: the original pages, then a signature certificate with each signer, the signing time and the
SHA-256 of the original."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from datetime import datetime, timezone

from pypdf import PdfReader, PdfWriter
from pypdf.errors import PdfReadError
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Spacer

from activities.services.documents.content import SignatureEntry
from activities.services.documents.errors import InvalidDocumentData
from activities.services.documents.pdf import build_pdf, labelled, para


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def format_signed_at(value: datetime | str, where: str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise InvalidDocumentData(f"{where}: a time is required")


def signature_block(index: int, entry: SignatureEntry) -> list[Flowable]:
    where = f"signatures[{index}]"
    signer = str(entry.get("signer") or "").strip()
    if not signer:
        raise InvalidDocumentData(f"{where}.signer: a name is required")
    signed_at = format_signed_at(entry.get("signed_at"), f"{where}.signed_at")
    role = str(entry.get("role") or "").strip()
    block: list[Flowable] = [
        para(f"{index + 1}. {signer}" + (f" ({role})" if role else ""), "bold"),
        labelled("Signed at", signed_at),
    ]
    if entry.get("code_hash"):
        block.append(labelled("Confirmation code hash", str(entry["code_hash"]), "small"))
    block.append(Spacer(1, 3 * mm))
    return block


def read_pdf(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data))
        len(reader.pages)
    except (PdfReadError, ValueError, OSError) as exc:
        raise InvalidDocumentData(f"original_pdf: not a readable PDF ({str(exc)[:200]})") from None
    return reader


def certificate_pdf(document: str, digest: str, pages: int, signatures: Sequence[SignatureEntry]) -> bytes:
    story: list[Flowable] = [
        para("Signature certificate", "title"),
        labelled("Document", document),
        labelled("Pages of the original document", str(pages)),
        para("SHA-256 of the original document:", "bold"),
        para(digest, "small"),
        Spacer(1, 2 * mm),
        para("The SHA-256 hash identifies the exact original document (the pages before this certificate as "
             "first issued); any change to that document changes the hash.", "small"),
        para("Signatures", "heading"),
    ]
    for i, entry in enumerate(signatures):
        story += signature_block(i, entry)
    return build_pdf(story, f"Signature certificate: {document}", "stageflow", f"Signature certificate — {document}")


def render_signed_pdf(original_pdf: bytes, signatures: Sequence[SignatureEntry]) -> bytes:
    """The original pages followed by a certificate page listing each signer, the signing time, and the
    SHA-256 of the original PDF (also stored in the metadata as /OriginalSHA256)."""
    if not signatures:
        raise InvalidDocumentData("signatures: at least one signature is required")
    reader = read_pdf(original_pdf)
    digest = sha256_hex(original_pdf)
    document = (reader.metadata.title if reader.metadata and reader.metadata.title else "") or "document"
    certificate = certificate_pdf(document, digest, len(reader.pages), signatures)
    writer = PdfWriter()
    writer.append(reader)
    writer.append(PdfReader(io.BytesIO(certificate)))
    writer.add_metadata({"/Title": f"{document} (signed)", "/Producer": "stageflow", "/OriginalSHA256": digest})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
