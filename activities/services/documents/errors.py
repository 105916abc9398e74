"""What goes wrong with a document: a template that cannot be used, or data that cannot be shown."""

from __future__ import annotations


class TemplateRejected(Exception):
    """A document template is unusable or unsafe; the message says why."""


class InvalidDocumentData(ValueError):
    """The document data is unusable; the message starts with the field at fault."""
