"""Document templates: the built-in ones and an admin's own .docx templates (docxtpl, rendered in a sandbox)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Path, Response, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import defer
from sqlmodel import func, select

from activities.services.documents import (
    BUILTIN_KINDS,
    BUILTIN_PREFIXES,
    DEFAULT_TITLES,
    MAX_TEMPLATE_BYTES,
    TemplateRejected,
    builtin_template,
    check_template,
)
from api.deps import PageDep, SessionDep, admin_only, member_only, page_of
from api.errors import field_error, not_found
from api.files import DOCX, file_response
from api.schemas import DocumentTemplatePublic
from models.tables import Automation, DocumentTemplate

router = APIRouter(prefix="/document-templates", tags=["documents"], dependencies=member_only)
Code = Annotated[str, Path(min_length=1, max_length=50, pattern=r"^[a-z][a-z0-9_]*$")]
TEMPLATE_UPLOAD_MAX_BYTES = MAX_TEMPLATE_BYTES + 64 * 1024  # the file and the form around it


def _builtin(kind: str) -> DocumentTemplatePublic:
    return DocumentTemplatePublic(
        code=kind, name=DEFAULT_TITLES.get(kind, kind), prefix=BUILTIN_PREFIXES.get(kind, "DOC"), builtin=True
    )


def _public(row: DocumentTemplate, size: int) -> DocumentTemplatePublic:
    return DocumentTemplatePublic(
        code=row.code, name=row.name, prefix=row.prefix, builtin=False, size=size, created_at=row.created_at
    )


def _rules_using(config: dict, code: str) -> list[tuple[str, str]]:
    return [
        (stage, str(rule.get("name")))
        for stage, automation in (config.get("stages") or {}).items()
        for rule in (automation or {}).get("rules") or []
        if isinstance(rule, dict) and (rule.get("settings") or {}).get("template") == code
    ]


@router.post(
    "",
    response_model=DocumentTemplatePublic,
    status_code=status.HTTP_201_CREATED,
    dependencies=admin_only,
)
async def upload_template(
    session: SessionDep,
    code: Annotated[str, Form(min_length=1, max_length=50, pattern=r"^[a-z][a-z0-9_]*$")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    file: Annotated[UploadFile, File(description="A .docx with docxtpl placeholders")],
    prefix: Annotated[str, Form(pattern=r"^[A-Z0-9]{1,10}$", description="Document number prefix")] = "DOC",
):
    """Upload a template; it is rendered with sample data in the sandbox first, and refused if that fails."""
    if code in BUILTIN_KINDS:
        raise field_error(("body", "code"), f"{code} is a built-in template")
    if session.exec(select(DocumentTemplate.id).where(DocumentTemplate.code == code)).first() is not None:
        raise field_error(("body", "code"), f"a template with code {code} exists", status.HTTP_409_CONFLICT)
    content = await file.read(MAX_TEMPLATE_BYTES + 1)
    if len(content) > MAX_TEMPLATE_BYTES:
        raise field_error(("body", "file"), f"must be at most {MAX_TEMPLATE_BYTES} bytes")
    try:
        await run_in_threadpool(check_template, content)
    except TemplateRejected as error:
        raise field_error(("body", "file"), str(error)) from error
    row = DocumentTemplate(code=code, name=name, prefix=prefix, content=content)
    session.add(row)
    session.commit()
    return _public(row, len(content))


@router.get("", response_model=list[DocumentTemplatePublic])
def list_templates(session: SessionDep, page: PageDep, response: Response):
    rows = session.exec(
        select(DocumentTemplate, func.length(DocumentTemplate.content))
        .options(defer(DocumentTemplate.content))
        .order_by(DocumentTemplate.code)
    ).all()
    listing = [_builtin(kind) for kind in BUILTIN_KINDS] + [_public(row, size) for row, size in rows]
    return page_of(listing, page, response)


@router.get("/{code}/docx", response_class=Response, responses={200: {"content": {DOCX: {}}}})
def download_template(code: Code, session: SessionDep):
    if code in BUILTIN_KINDS:
        return file_response(builtin_template(code), DOCX, f"{code}.docx")
    row = session.exec(select(DocumentTemplate).where(DocumentTemplate.code == code)).first()
    if row is None:
        raise not_found("Document template", code)
    return file_response(row.content, DOCX, f"{code}.docx")


@router.delete("/{code}", status_code=status.HTTP_204_NO_CONTENT, dependencies=admin_only)
def delete_template(code: Code, session: SessionDep) -> None:
    if code in BUILTIN_KINDS:
        raise field_error(("path", "code"), f"{code} is a built-in template and cannot be deleted")
    row = session.exec(select(DocumentTemplate).where(DocumentTemplate.code == code)).first()
    if row is None:
        raise not_found("Document template", code)
    users = sorted(
        f"pipeline {automation.pipeline_id} stage {stage} rule {rule}"
        for automation in session.exec(select(Automation)).all()
        for stage, rule in _rules_using(automation.config, code)
    )
    if users:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT, detail=f"template {code} is used by {'; '.join(users)}"
        )
    session.delete(row)
    session.commit()
