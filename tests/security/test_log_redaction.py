"""Tokens of capability URLs never reach the logs: the API as a real uvicorn process (`uvicorn
api.main:create_app --factory`, uvicorn's own logging configuration and access log) is called on every route
reached by a token, and its output keeps the path of each request with the token replaced by `***`.

tests/security/test_secrets.py checks the same on real signing links and a real inbound-hook secret, across the
API, worker and Temporal logs.
"""

from __future__ import annotations

import io
import logging
import secrets
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from models.logs import REDACTED, install_redaction, redact
from tests.faults.cluster import Cluster
from tests.security.findings import record
from tests.security.test_access import BODIES, BY_TOKEN, with_token

WITH_QUERY = ("GET", "/public/documents/{token}?view=html")


async def test_the_access_log_keeps_paths_but_not_their_tokens(dev_env: WorkflowEnvironment, tmp_path: Path):
    cluster = Cluster(tmp_path, TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host)
    routes = sorted(BY_TOKEN) + [WITH_QUERY]
    tokens = {route: secrets.token_urlsafe(32) for route in routes}
    try:
        cluster.start_api()
        async with httpx.AsyncClient(base_url=cluster.api_url, timeout=30) as anon:
            answers = {}
            for (method, path), token in tokens.items():
                response = await anon.request(method, with_token(path, token), json=BODIES.get(path, {}))
                answers[(method, path)] = response.status_code
            known = await anon.get("/documents/987654", headers=cluster.headers)
    finally:
        cluster.close()
    log = cluster.logs_text()

    assert set(answers.values()) == {404} and known.status_code == 404, answers
    leaked = [route for route, token in tokens.items() if token in log]
    assert leaked == [], leaked
    missing = [
        (method, path) for method, path in routes
        if f'"{method} {with_token(path, REDACTED)} HTTP/1.1" 404' not in log
    ]
    assert missing == [], (missing, log[-3000:])
    assert '"GET /documents/987654 HTTP/1.1" 404' in log
    record("log_redaction", {
        "token_routes_called": len(routes), "tokens_in_api_log": len(leaked),
        "redacted_access_lines": len(routes) - len(missing), "api_log_bytes": len(log),
    })


def test_any_log_line_with_a_capability_url_is_redacted_with_its_traceback():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("tests.security.redaction")
    logger.propagate = False
    logger.addHandler(handler)
    hook, sign, click = (secrets.token_urlsafe(32) for _ in range(3))
    try:
        install_redaction()
        logger.warning("Temporal call failed for %s %s", "POST", f"/hooks/{hook}")
        logger.warning("Reminder: http://shop.example/sign/%s/code?lang=pl", sign)
        try:
            raise ValueError(f"could not follow https://crm.example/t/c/{click}/3")
        except ValueError:
            logger.exception("Redirect failed")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()

    assert all(token not in text for token in (hook, sign, click)), text
    for shown in ("failed for POST /hooks/***", "http://shop.example/sign/***/code?lang=pl",
                  "ValueError: could not follow https://crm.example/t/c/***/3"):
        assert shown in text, text


def test_only_the_token_segment_of_the_listed_prefixes_is_redacted():
    token = secrets.token_urlsafe(32)
    assert redact(f"GET /t/o/{token}.gif HTTP/1.1") == "GET /t/o/***.gif HTTP/1.1"
    assert redact(f"/public/documents/{token}/pdf") == "/public/documents/***/pdf"
    for untouched in ("/documents/12/revoke-signing", "/deals/3/timeline?kind=comment", "/design/sign", "/hooks"):
        assert redact(untouched) == untouched
