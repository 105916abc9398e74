"""Documents: what a document says (`content`), its money (`money`), DOCX from templates rendered in a sandbox
(`docx`, `sandbox`), the PDF layout (`pdf`) and the signature certificate of a signed PDF (`certificate`). Pure
functions over a `DocumentContext`: no database, no Temporal. The rules that make documents and the API's signing
pages both use them.
"""

from activities.services.documents.certificate import render_signed_pdf, sha256_hex
from activities.services.documents.content import (
    BUILTIN_KINDS,
    BUILTIN_PREFIXES,
    DEFAULT_TITLES,
    DocumentContext,
    format_number,
)
from activities.services.documents.docx import (
    MAX_TEMPLATE_BYTES,
    builtin_template,
    check_template,
    render_docx,
    solid_png,
)
from activities.services.documents.errors import InvalidDocumentData, TemplateRejected
from activities.services.documents.money import compute_totals
from activities.services.documents.pdf import render_pdf

__all__ = [
    "BUILTIN_KINDS",
    "BUILTIN_PREFIXES",
    "DEFAULT_TITLES",
    "MAX_TEMPLATE_BYTES",
    "DocumentContext",
    "InvalidDocumentData",
    "TemplateRejected",
    "builtin_template",
    "check_template",
    "compute_totals",
    "format_number",
    "render_docx",
    "render_pdf",
    "render_signed_pdf",
    "sha256_hex",
    "solid_png",
]
