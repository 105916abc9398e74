"""The Jinja sandbox document templates render in: no loading of other templates, attribute access only on plain
data, and bounds on repetition, powers and output size."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any

from jinja2 import BaseLoader, TemplateError, TemplateNotFound, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from activities.services.documents.errors import TemplateRejected

MAX_OUTPUT_CHARS = 20 * 1024 * 1024
MAX_SEQUENCE_LEN = 100_000
MAX_POWER_BITS = 100_000
COMPILED_CACHE_SIZE = 128
FORBIDDEN_TAGS = frozenset({"include", "import", "from", "extends"})
SAFE_TYPES = (str, int, float, Decimal, dict, list, tuple, date, Markup, type(None))


class NoLoader(BaseLoader):
    """Templates may not load other templates or files."""

    def get_source(self, environment: Any, template: str) -> tuple[str, str | None, Any]:
        raise TemplateNotFound(template, "document templates cannot load other templates")


class NoTemplateLoading(Extension):
    """Rejects include, import, from-import and extends before anything is compiled."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        previous: Token | None = None
        for token in stream:
            if previous is not None and previous.type == "block_begin" and token.type == "name":
                if token.value in FORBIDDEN_TAGS:
                    raise SecurityError(f"'{{% {token.value} %}}' is not allowed in document templates")
            previous = token
            yield token


def bounded_concat(parts: Iterable[str]) -> str:
    chunks: list[str] = []
    size = 0
    for part in parts:
        size += len(part)
        if size > MAX_OUTPUT_CHARS:
            raise SecurityError(f"the rendered document exceeds {MAX_OUTPUT_CHARS} characters")
        chunks.append(part)
    return "".join(chunks)


class DocumentSandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox that raises on unsafe attributes, allows attribute access only on plain data
    and Jinja's own helpers, and bounds sequence repetition, powers and output size."""

    intercepted_binops = frozenset({"*", "**"})
    concat = staticmethod(bounded_concat)

    def __init__(self) -> None:
        super().__init__(loader=NoLoader(), autoescape=True, extensions=[NoTemplateLoading])
        self.compiled = lru_cache(maxsize=COMPILED_CACHE_SIZE)(super().from_string)

    def from_string(self, source: Any, globals: Any = None, template_class: Any = None) -> Any:
        """Compiled templates are cached by source text: a template's parts are compiled once."""
        if isinstance(source, str) and globals is None and template_class is None:
            return self.compiled(source)
        return super().from_string(source, globals, template_class)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        return isinstance(obj, SAFE_TYPES) or type(obj).__module__.startswith("jinja2.")

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} is not allowed")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            check_repetition(left, right)
            check_repetition(right, left)
        elif operator == "**":
            check_power(left, right)
        return super().call_binop(context, operator, left, right)


def check_repetition(sequence: Any, times: Any) -> None:
    if isinstance(sequence, (str, list, tuple)) and isinstance(times, int):
        if len(sequence) * times > MAX_SEQUENCE_LEN:
            raise SecurityError(f"repeating a value to more than {MAX_SEQUENCE_LEN} items is not allowed")


def check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int):
        if max(base.bit_length(), 1) * abs(exponent) > MAX_POWER_BITS:
            raise SecurityError("the power is too large")


@lru_cache(maxsize=1)
def sandbox() -> DocumentSandbox:
    """The one sandbox environment, shared by all renders (Jinja environments are thread-safe)."""
    return DocumentSandbox()


def rejection(exc: Exception) -> TemplateRejected:
    if isinstance(exc, SecurityError):
        return TemplateRejected(f"template rejected: {exc}")
    if isinstance(exc, TemplateNotFound):
        return TemplateRejected("template rejected: document templates cannot load other templates or files")
    if isinstance(exc, TemplateSyntaxError):
        return TemplateRejected(f"template syntax error: {exc.message}{near(exc)}")
    if isinstance(exc, TemplateError):
        return TemplateRejected(f"template error: {exc.message}{near(exc)}")
    return TemplateRejected(f"template failed to render: {type(exc).__name__}: {str(exc)[:300]}")


def near(exc: Exception) -> str:
    lines = getattr(exc, "docx_context", None)
    if lines is None:
        return ""
    text = " ".join(" ".join(lines).split())
    return f" (near: {text[:160]!r})" if text else ""
