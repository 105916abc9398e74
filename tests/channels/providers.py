"""Local stand-ins for the providers, speaking their documented shapes, each request checked field by field.

- Telegram Bot API, `sendMessage` (https://core.telegram.org/bots/api#sendmessage): `POST /bot<token>/sendMessage`,
  JSON with `chat_id` (integer or string) and `text` (1-4096 characters); answer `{"ok": true, "result": Message}`.
- WhatsApp Cloud API, messages (https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages):
  `POST /<version>/<phone number id>/messages`, `Authorization: Bearer <token>`, JSON with `messaging_product:
  "whatsapp"`, `recipient_type: "individual"`, `to` (digits, no +), `type` `text` (`text.body`, `text.preview_url`) or
  `template` (`template.name`, `template.language.code`); answer `{"messaging_product", "contacts": [{"input",
  "wa_id"}], "messages": [{"id": "wamid…"}]}`.
- Twilio Calls API (https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource):
  `POST /2010-04-01/Accounts/<AccountSid>/Calls.json`, HTTP Basic auth (AccountSid, AuthToken), form-encoded `To`,
  `From` (E.164), `Twiml`, `StatusCallback`, `StatusCallbackEvent` (repeated), `StatusCallbackMethod`; answer 201
  with the call resource (`sid` "CA" + 32 hex digits, `status` "queued").

A request that breaks its documented shape is answered 400 and recorded with what was wrong, so a test sees it.
`outage` makes the server answer 503 (a provider down for a while).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from scripts.local import free_port

BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
WHATSAPP_TOKEN = "EAAG-test-access-token-0123456789"
PHONE_NUMBER_ID = "106540352242922"
ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "twilio-auth-token-0123456789abcdef"
CALL_FROM = "+48221234567"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass
class Received:
    provider: str
    path: str
    headers: dict[str, str]
    body: Any
    problems: list[str]


@dataclass
class Providers:
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    outage: bool = False
    refused: int = 0
    """Requests answered 503 during an outage."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def of(self, provider: str) -> list[Received]:
        """The requests of one provider that kept to its documented shape."""
        with self.lock:
            return [request for request in self.requests if request.provider == provider and not request.problems]

    def broken(self) -> list[Received]:
        with self.lock:
            return [request for request in self.requests if request.problems]


def _telegram(path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, Any, list[str]]:
    problems = []
    if path != f"/bot{BOT_TOKEN}/sendMessage":
        return 401, None, {"ok": False, "error_code": 401, "description": "Unauthorized"}, ["wrong token or method"]
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append("Content-Type is not application/json")
    try:
        body = json.loads(raw)
    except ValueError:
        return 400, None, {"ok": False, "error_code": 400, "description": "Bad Request: can't parse JSON"}, ["not JSON"]
    chat = body.get("chat_id")
    if isinstance(chat, bool) or not isinstance(chat, (int, str)) or not re.fullmatch(r"-?\d+|@\w{5,32}", str(chat)):
        problems.append(f"chat_id {chat!r} is not an integer or @username")
    text = body.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= 4096:
        problems.append("text is not 1-4096 characters")
    if problems:
        answer = {"ok": False, "error_code": 400, "description": "Bad Request: " + "; ".join(problems)}
        return 400, body, answer, problems
    result = {"message_id": secrets.randbelow(10**6), "chat": {"id": int(chat) if str(chat).lstrip("-").isdigit()
                                                               else chat}, "date": 1765000000, "text": text}
    return 200, body, {"ok": True, "result": result}, []


def _whatsapp(path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, Any, list[str]]:
    problems = []
    if not re.fullmatch(rf"/v\d+\.\d+/{PHONE_NUMBER_ID}/messages", path):
        problems.append(f"path {path} is not /<version>/<phone number id>/messages")
    if headers.get("authorization") != f"Bearer {WHATSAPP_TOKEN}":
        return 401, None, {"error": {"message": "Invalid OAuth access token", "code": 190}}, ["wrong token"]
    try:
        body = json.loads(raw)
    except ValueError:
        return 400, None, {"error": {"message": "not JSON", "code": 100}}, ["not JSON"]
    if body.get("messaging_product") != "whatsapp":
        problems.append("messaging_product is not whatsapp")
    if body.get("recipient_type", "individual") != "individual":
        problems.append("recipient_type is not individual")
    to = body.get("to")
    if not isinstance(to, str) or not re.fullmatch(r"[1-9]\d{6,14}", to):
        problems.append(f"to {to!r} is not a number in digits")
    if body.get("type") == "text":
        text = (body.get("text") or {}).get("body")
        if not isinstance(text, str) or not 1 <= len(text) <= 4096:
            problems.append("text.body is not 1-4096 characters")
    elif body.get("type") == "template":
        template = body.get("template") or {}
        language = (template.get("language") or {}).get("code")
        if not isinstance(template.get("name"), str) or not isinstance(language, str):
            problems.append("template has no name or language.code")
    else:
        problems.append(f"type {body.get('type')!r} is neither text nor template")
    if problems:
        return 400, body, {"error": {"message": "; ".join(problems), "code": 100}}, problems
    answer = {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
              "messages": [{"id": "wamid." + secrets.token_hex(16)}]}
    return 200, body, answer, []


def _twilio(path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, Any, list[str]]:
    problems = []
    if path != f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json":
        problems.append(f"path {path} is not the account's Calls.json")
    expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    if headers.get("authorization") != expected:
        return 401, None, {"code": 20003, "message": "Authenticate", "status": 401}, ["wrong credentials"]
    if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        problems.append("Content-Type is not application/x-www-form-urlencoded")
    pairs = parse_qsl(raw.decode(), keep_blank_values=True)
    form: dict[str, Any] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    single = {name: values[0] for name, values in form.items()}
    for name in ("To", "From"):
        if not E164.match(single.get(name, "")):
            problems.append(f"{name} {single.get(name)!r} is not E.164")
    twiml = single.get("Twiml", "")
    if not re.fullmatch(r"<Response><Say( language=\"[^\"]+\")?>[^<]+</Say></Response>", twiml):
        problems.append(f"Twiml {twiml!r} is not a <Response> with one <Say>")
    if not single.get("StatusCallback", "").startswith(("http://", "https://")):
        problems.append("StatusCallback is not a URL")
    if single.get("StatusCallbackMethod") not in ("GET", "POST"):
        problems.append("StatusCallbackMethod is not GET or POST")
    events = form.get("StatusCallbackEvent", [])
    if not events or not set(events) <= {"initiated", "ringing", "answered", "completed"}:
        problems.append(f"StatusCallbackEvent {events!r} are not Twilio's events")
    body = {**single, "StatusCallbackEvent": events}
    if problems:
        return 400, body, {"code": 21201, "message": "; ".join(problems), "status": 400}, problems
    sid = "CA" + secrets.token_hex(16)
    return 201, body, {"sid": sid, "status": "queued", "to": single["To"], "from": single["From"],
                       "account_sid": ACCOUNT_SID}, []


ROUTES = [("telegram", re.compile(r"^/bot[^/]+/sendMessage$"), _telegram),
          ("whatsapp", re.compile(r"^/v\d+\.\d+/[^/]+/messages$"), _whatsapp),
          ("twilio", re.compile(r"^/2010-04-01/Accounts/[^/]+/Calls\.json$"), _twilio)]


@contextmanager
def providers() -> Iterator[Providers]:
    """The three providers on one loopback port."""
    state = Providers(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            if state.outage:
                with state.lock:
                    state.refused += 1
                self._answer(503, {"error": "temporarily unavailable"})
                return
            for provider, pattern, handle in ROUTES:
                if pattern.match(self.path):
                    code, body, answer, problems = handle(self.path, headers, raw)
                    with state.lock:
                        state.requests.append(Received(provider, self.path, headers, body, problems))
                    self._answer(code, answer)
                    return
            self._answer(404, {"error": f"no such endpoint {self.path}"})

        def _answer(self, code: int, answer: Any) -> None:
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return None

    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", state.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def provider_settings(url: str) -> dict[str, str]:
    """The settings (environment variables) that point stageflow at the providers at `url`."""
    return {
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN, "TELEGRAM_API_URL": url, "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
        "WHATSAPP_TOKEN": WHATSAPP_TOKEN, "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "WHATSAPP_API_URL": f"{url}/v21.0", "WHATSAPP_APP_SECRET": APP_SECRET, "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
        "WHATSAPP_TEMPLATES": "order_ready:pl,invoice_sent:en_US",
        "CALLS_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": CALL_FROM, "TWILIO_API_URL": url,
    }


TELEGRAM_SECRET = "telegram-secret-token_0123456789"
APP_SECRET = "meta-app-secret-0123456789abcdef"
VERIFY_TOKEN = "verify-me-0123456789"
