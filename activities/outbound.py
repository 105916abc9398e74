"""Calling outside HTTP endpoints for rules: the webhook rule and the rule types apps register.

Every call goes through the worker's `Transports.http` (`activities.transports.net.safe_request`), which refuses private and loopback addresses
unless STAGEFLOW_ALLOW_PRIVATE_URLS allows them. Every call of one rule carries the same `Idempotency-Key` (a
digest of the rule's effect key), so the outside system can tell a retry from a new request. A refused URL or
a 4xx answer fails the rule at once; a 5xx answer (or 408, 425, 429) and network errors are retried with
backoff.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from activities.rule import RuleContext, RuleFailed
from activities.transports.net import ResponseTooLarge, UrlRefused, redact_url
from models.domain import placeholders
from models.domain.data_tree import entity_root

IDEMPOTENCY_HEADER = "Idempotency-Key"
CALLBACK_HEADER = "X-Stageflow-Callback"
RETRYABLE_STATUSES = frozenset({408, 425, 429})
CUSTOM_TIMEOUT_SECONDS = 30.0
EXCERPT = 200


class WebhookUnavailable(Exception):
    """The endpoint could not be reached or answered with a temporary error; the rule is retried."""


def idempotency_key(ctx: RuleContext) -> str:
    """The same for every attempt of one rule in one stage entry (and after a reset in the Temporal UI)."""
    return hashlib.sha256(ctx.effect_key.encode()).hexdigest()


def item_payload(ctx: RuleContext) -> dict[str, Any]:
    """What the outside system learns about the item: its data tree as placeholders see it."""
    return {
        "rule": ctx.rule_name,
        "type": ctx.rule_type,
        "entity": ctx.entity,
        "item_id": ctx.item_id,
        "pipeline_id": ctx.pipeline_id,
        "stage": ctx.stage,
        "item": ctx.data.get(entity_root(ctx.entity)),
        "variables": ctx.data.get("Variables") or {},
    }


def render_url(url: str, data: Mapping[str, Any]) -> str:
    """The URL with its placeholders filled in: a placeholder that opens the URL (a base URL kept in a
    constant) as it is, every other one percent-encoded so that a value cannot change the URL's shape."""

    def substitute(match: Any) -> str:
        value = placeholders.format_value(placeholders.resolve(match.group(1), data))
        return value if match.start() == 0 else quote(value, safe="")

    return placeholders.PLACEHOLDER_RE.sub(substitute, url.strip())


def render_headers(headers: Mapping[str, str], data: Mapping[str, Any]) -> dict[str, str]:
    rendered: dict[str, str] = {}
    for name, value in headers.items():
        text = placeholders.render(value, data)
        if "\r" in text or "\n" in text:
            raise RuleFailed(f"settings.headers.{name}: the value must be one line")
        rendered[name] = text
    return rendered


def _excerpt(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


async def call_endpoint(
    ctx: RuleContext,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    json_body: Any = None,
    content: str | None = None,
    timeout: float,
    where: str,
) -> httpx.Response:
    """One call; RuleFailed (naming `where`, the setting that gave the URL) when retrying cannot help,
    WebhookUnavailable when it can."""
    shown = redact_url(url)
    try:
        response = await ctx.deps.transports.http(
            ctx.rule_name, method, url, allow_private=ctx.deps.settings.allow_private_urls, headers=headers,
            json=json_body, content=content, timeout=timeout,
        )
    except UrlRefused as error:
        raise RuleFailed(f"{where}: {error}") from error
    except ResponseTooLarge as error:
        raise RuleFailed(f"{where}: {shown} answered with too much data ({error})") from error
    except httpx.TransportError as error:
        raise WebhookUnavailable(f"{shown} cannot be reached: {type(error).__name__}: {error}") from error
    status = response.status_code
    if status >= 500 or status in RETRYABLE_STATUSES:
        raise WebhookUnavailable(f"{shown} answered {status}: {_excerpt(response)}")
    if not 200 <= status < 300:
        raise RuleFailed(f"{where}: {shown} answered {status} {response.reason_phrase}: {_excerpt(response)}")
    return response


def returned_values(response: httpx.Response, names: Sequence[str], *, must_answer: bool) -> dict[str, Any]:
    """The declared return values from a JSON object answer; a name the answer lacks is None."""
    if not names:
        return {}
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        if must_answer:
            raise RuleFailed(
                f"returns: {redact_url(response.request.url)} answered {response.status_code} without a JSON "
                f"object, so {', '.join(names)} cannot be read"
            )
        answer = {}
    return {name: answer.get(name) for name in names}


