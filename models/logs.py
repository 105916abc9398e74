"""Capability URLs stay out of the logs.

So do the Telegram bot tokens in the Bot API's URLs. The token in a public route's path is the whole of its secret: `/hooks/<secret>`, `/sign/<token>`,
`/public/documents/<token>`, `/t/o/<token>.gif`, `/t/c/<token>/<n>` and `/callbacks/<token>`. uvicorn's access
log prints every request's path, and a warning may print a URL. `RedactTokens` replaces that path segment
with `***` in a record's arguments (keeping their number, which uvicorn's access formatter relies on), in the
message when its template itself holds a path prefix, and in traceback text. `install_redaction()` puts it on
uvicorn's access and error loggers and on every log handler configured so far. `create_app` calls it, so every
way of running the API (`uvicorn api.main:create_app --factory`, `make run`, the Docker image) has it: uvicorn
configures its logging before it calls the factory.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"
SECRET_PREFIXES = ("/hooks/", "/sign/", "/public/documents/", "/t/o/", "/t/c/", "/callbacks/")
CAPABILITY_TOKEN = re.compile(
    "(" + "|".join(re.escape(prefix) for prefix in SECRET_PREFIXES) + r")([^/?#.\s\"'<>]+)"
)
"""A capability URL path: its prefix (group 1) and its token (group 2)."""
BOT_TOKEN = re.compile(r"(?<![0-9])\d{5,}:[A-Za-z0-9_-]{30,}")
QUERY_SECRET = re.compile(r"(hub\.verify_token=)[^&\s\"']+")
"""The WhatsApp verify token Meta sends in the callback URL's query when it checks the webhook."""
"""A Telegram bot token, which the Bot API puts in the path of every call (`/bot<token>/sendMessage`)."""
_PLAIN = (int, float, bool, type(None))


def redact(text: str) -> str:
    """`text` with the token segment of every capability URL path in it replaced by `***`."""
    text = CAPABILITY_TOKEN.sub(rf"\g<1>{REDACTED}", text)
    return QUERY_SECRET.sub(rf"\g<1>{REDACTED}", BOT_TOKEN.sub(REDACTED, text))


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, _PLAIN):
        return value
    shown = str(value)
    cleaned = redact(shown)
    return value if cleaned == shown else cleaned


class RedactTokens(logging.Filter):
    """Redacts capability URL tokens in a record before any handler formats it; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(value) for value in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _redact_arg(value) for key, value in record.args.items()}
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            message = None  # a malformed record: the handler reports it as it would without this filter
        if message is not None and redact(message) != message:
            record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _add_once(target: logging.Filterer | None, redaction: RedactTokens) -> None:
    if target is not None and not any(isinstance(existing, RedactTokens) for existing in target.filters):
        target.addFilter(redaction)


def install_redaction() -> None:
    """Redaction on uvicorn's access and error loggers (their records, whatever handler writes them) and on
    every handler configured so far, including the last-resort one, for records of any other logger."""
    redaction = RedactTokens()
    for name in ("uvicorn.access", "uvicorn.error"):
        _add_once(logging.getLogger(name), redaction)
    loggers = [logging.getLogger()] + [
        logger for logger in list(logging.Logger.manager.loggerDict.values()) if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            _add_once(handler, redaction)
    _add_once(logging.lastResort, redaction)
