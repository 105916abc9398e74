"""Document PDFs rendered after the rule that made the document has returned: on a background task of the worker
process, retried a few times, then marked failed; and, when the worker starts (and whenever a document rule runs),
the PDFs whose background render was lost with a worker that stopped.

A PDF is rendered from what the document's row keeps (`data`, and the signature and stamp images in
`render_input` until the PDF exists), so it is the same whenever and wherever it is rendered.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from activities.services.documents import DocumentContext, render_pdf, sha256_hex
from models.db import session_scope
from models.tables import Document

log = logging.getLogger(__name__)
PDF_RETRY_DELAYS = (0.5, 2.0, 5.0)
PENDING_PDF_AGE = timedelta(seconds=10)


def _context_from(document: Document) -> DocumentContext:
    """The render inputs stored on the row: the PDF matches the DOCX made with them."""
    data = document.data
    images = document.render_input or {}
    return DocumentContext(
        kind=data["kind"],
        number=document.number,
        issued_on=date.fromisoformat(data["issued_on"]),
        currency=data["currency"],
        title=document.title,
        seller=dict(data.get("seller") or {}),
        buyer=dict(data.get("buyer") or {}),
        bank=dict(data.get("bank") or {}),
        lines=[dict(line) for line in data.get("lines") or []],
        extra=dict(data.get("extra") or {}),
        signature_png=base64.b64decode(images["signature_png"]) if images.get("signature_png") else None,
        stamp_png=base64.b64decode(images["stamp_png"]) if images.get("stamp_png") else None,
        signer_name=data.get("signer_name"),
    )


def render_pending_pdf(engine: Engine, document_id: int) -> bool:
    """Render and store the document's PDF unless it exists. True when this call stored it."""
    with session_scope(engine) as session:
        document = session.get(Document, document_id)
        if document is None or document.pdf is not None or document.docx is None:
            return False
        document_ctx = _context_from(document)
    pdf = render_pdf(document_ctx)
    with session_scope(engine) as session:
        stored = session.execute(
            update(Document)
            .where(col(Document.id) == document_id, col(Document.pdf).is_(None))
            .values(pdf=pdf, sha256=sha256_hex(pdf), status="ready", render_input={})
        )
        return stored.rowcount == 1


_in_flight: set[int] = set()
_tasks: set[asyncio.Task] = set()


def spawn(work: Any) -> None:
    task = asyncio.get_running_loop().create_task(work)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def render_pdf_later(engine: Engine, document_id: int) -> None:
    """Render the PDF on a background task of this process (once per document at a time)."""
    if document_id in _in_flight:
        return
    _in_flight.add(document_id)
    spawn(_render_in_background(engine, document_id))


async def _render_in_background(engine: Engine, document_id: int) -> None:
    try:
        for pause in (*PDF_RETRY_DELAYS, None):
            try:
                await asyncio.to_thread(render_pending_pdf, engine, document_id)
                return
            except Exception as error:
                log.warning("PDF of document %s failed: %s", document_id, error)
                if pause is None:
                    await asyncio.to_thread(_mark_failed, engine, document_id, f"{type(error).__name__}: {error}")
                    return
                await asyncio.sleep(pause)
    finally:
        _in_flight.discard(document_id)


def _mark_failed(engine: Engine, document_id: int, error: str) -> None:
    with session_scope(engine) as session:
        document = session.get(Document, document_id)
        if document is not None and document.pdf is None:
            document.status = "failed"
            document.data = {**document.data, "error": error[:500]}
            session.add(document)


def _pending_pdfs(engine: Engine) -> list[int]:
    older_than = datetime.now(timezone.utc) - PENDING_PDF_AGE
    with session_scope(engine) as session:
        return list(session.exec(
            select(Document.id).where(
                Document.status == "rendering",
                col(Document.docx).is_not(None),
                col(Document.pdf).is_(None),
                col(Document.created_at) < older_than,
            )
        ).all())


async def resume_pending_pdfs(engine: Engine) -> int:
    """Start rendering the PDFs whose background render was lost (a worker stopped). Returns how many."""
    ids = [document_id for document_id in await asyncio.to_thread(_pending_pdfs, engine) if document_id not in _in_flight]
    for document_id in ids:
        render_pdf_later(engine, document_id)
    return len(ids)
