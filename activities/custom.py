"""Custom rules: the webhook rule, and the rule types apps register (`POST /rule-types`).

Both call an outside HTTP endpoint through `activities.net.safe_request`, which refuses private and
loopback addresses unless STAGEFLOW_ALLOW_PRIVATE_URLS allows them. Every call of one rule carries the
same `Idempotency-Key` (a digest of the rule's effect key), so the outside system can tell a retry from
a new request. A refused URL or a 4xx answer fails the rule at once; a 5xx answer (or 408, 425, 429) and
network errors are retried with backoff. With a callback, the entry waits after the rule until the
outside system posts its values to the callback URL (or the timeout passes); the posted values join
the rule's results.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from sqlmodel import Session

from activities import placeholders
from activities.context import entity_key
from activities.engine import RuleContext, RuleFailed
from activities.net import ResponseTooLarge, UrlRefused, redact_url, safe_request
from activities.store import get_by
from activities.variables import duration_seconds
from models.tables import CustomRuleType

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
        "item": ctx.data.get(entity_key(ctx.entity)),
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
        response = await safe_request(
            method, url, allow_private=ctx.deps.settings.allow_private_urls, headers=headers,
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


# -- webhook ---------------------------------------------------------------------------------------


def _body(ctx: RuleContext, callback: str | None) -> tuple[Any, str | None, str | None]:
    """(JSON body, text body, its content type) from `settings.body`; the default is the item's data."""
    body = ctx.settings.get("body")
    if isinstance(body, str):
        text = placeholders.render(body, ctx.data)
        try:
            json.loads(text)
        except ValueError:
            return None, text, "text/plain; charset=utf-8"
        return None, text, "application/json"
    payload = item_payload(ctx) if body is None else placeholders.render_value(body, ctx.data)
    if callback is not None:
        payload.setdefault("callback_url", callback)
    return payload, None, None


async def webhook(ctx: RuleContext) -> dict[str, Any]:
    """Calls `settings.url` with the item's data (or the rendered `body`); results are `status_code` and
    the `returns` values of the JSON answer (or, with `wait_for_callback`, of the values posted back)."""
    settings = ctx.settings
    method = settings.get("method", "POST")
    url = render_url(settings["url"], ctx.data)
    headers = render_headers(settings.get("headers") or {}, ctx.data)
    callback = None
    if settings.get("wait_for_callback"):
        callback = await ctx.callback_url(duration_seconds(ctx, settings.get("callback_timeout") or "24h"))
        headers[CALLBACK_HEADER] = callback
    headers[IDEMPOTENCY_HEADER] = idempotency_key(ctx)
    json_body, content, content_type = (None, None, None) if method == "GET" else _body(ctx, callback)
    if content_type and not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = content_type
    response = await call_endpoint(
        ctx, method, url, headers=headers, json_body=json_body, content=content,
        timeout=float(settings.get("timeout_seconds", 10)), where="settings.url",
    )
    returns = list(settings.get("returns") or [])
    return {"status_code": response.status_code, **returned_values(response, returns, must_answer=callback is None)}


# -- rule types registered by apps -------------------------------------------------------------------


async def custom(ctx: RuleContext) -> dict[str, Any]:
    """Runs a rule of an app's own type: POSTs the rule, its rendered settings and the item's data to the
    type's handler URL; the results are the type's declared `returns` from the JSON answer."""

    def load(session: Session) -> tuple[str, list[str]] | None:
        row = get_by(session, CustomRuleType, name=ctx.rule_type)
        return None if row is None else (row.handler_url, list(row.returns or []))

    found = await ctx.db(load)
    if found is None:
        raise RuleFailed(f"type: rule type {ctx.rule_type!r} is not registered (POST /rule-types)")
    handler_url, returns = found
    body = {**item_payload(ctx), "settings": placeholders.render_value(ctx.settings, ctx.data)}
    response = await call_endpoint(
        ctx, "POST", handler_url, headers={IDEMPOTENCY_HEADER: idempotency_key(ctx)}, json_body=body,
        timeout=CUSTOM_TIMEOUT_SECONDS, where=f"handler_url of rule type {ctx.rule_type}",
    )
    return returned_values(response, returns, must_answer=True)
