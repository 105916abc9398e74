"""Files in HTTP answers: a document's PDF or DOCX, inline or as a download, never cached by a proxy."""

from __future__ import annotations

from fastapi import HTTPException, Response, status

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MEDIA_TYPES = {"pdf": PDF, "docx": DOCX}


def file_response(content: bytes | None, media_type: str, filename: str, *, inline: bool = False) -> Response:
    if content is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"{filename} has not been rendered")
    disposition = "inline" if inline else "attachment"
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'{disposition}; filename="{filename}"', "Cache-Control": "private, no-store"},
    )


def safe_filename(document) -> str:
    """A file name made of the document's number (a `models.tables.Document` row)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in document.number) or f"document-{document.id}"


def document_file(document, kind: str, *, inline: bool = False, suffix: str = "") -> Response:
    """The document's `pdf` or `docx` (`kind`) as a file answer."""
    return file_response(getattr(document, kind), MEDIA_TYPES[kind], f"{safe_filename(document)}{suffix}.{kind}",
                         inline=inline)
