"""Messenger channels and calls against local stand-ins of Telegram, WhatsApp Cloud and Twilio (their requests
checked field by field in providers.py): a stage entry sends one message on each channel with the rendered text;
a call is placed and its "no-answer" callback moves the deal through the call-finished trigger; a client's
Telegram reply moves another deal through the client-replied trigger; a WhatsApp webhook with a bad signature is
refused and changes nothing; a redelivered update changes nothing."""

from __future__ import annotations

import pytest

from tests.channels.providers import CALL_FROM
from tests.channels.webhooks import (
    call_status,
    telegram_headers,
    telegram_update,
    twilio_signed,
    whatsapp_message,
    whatsapp_signed,
    whatsapp_status,
)
from tests.crm import automate, eventually, ok, pipeline, timeline, user

CHAT = 123456789
NUMBER = "+48601234567"


async def _client(http, **channels) -> dict:
    return ok(await http.post("/contacts", json={"name": "Anna Nowak", "phone": NUMBER, "channels": channels}), 201)


async def _deal(http, flow: dict, manager: dict, contact: dict, title: str = "Oak table") -> dict:
    return ok(await http.post("/deals", json={"title": title, "pipeline_id": flow["id"], "amount": 1200,
                                              "currency": "EUR", "responsible_id": manager["id"],
                                              "contact_id": contact["id"]}), 201)


async def _stage(http, deal_id: int, stage: str) -> bool:
    return ok(await http.get(f"/deals/{deal_id}"))["stage"] == stage


async def test_a_stage_entry_sends_one_telegram_and_one_whatsapp_message(channel_stack, fake):
    http = channel_stack.http
    manager = await user(http, "Marek")
    flow = await pipeline(http, ["NEW", "WON"])
    await automate(http, flow["id"], {"NEW": {"rules": [
        {"name": "tg", "type": "send_channel_message",
         "settings": {"channel": "telegram", "text": "Hello {{Deal.Contact.Name}}, {{Deal.Title}} is ordered."}},
        {"name": "wa", "type": "send_channel_message",
         "settings": {"channel": "whatsapp", "text": "{{Deal.Title}}: {{Deal.Amount}} {{Deal.Currency}}"}},
        {"name": "wa template", "type": "send_channel_message",
         "settings": {"channel": "whatsapp", "template": "order_ready", "text": "order_ready sent"}},
    ]}})
    contact = await _client(http, telegram=CHAT, whatsapp="+48 601 234 567")
    deal = await _deal(http, flow, manager, contact)

    await eventually(lambda: len(fake.of("whatsapp")) == 2 and fake.of("telegram"), timeout=30)
    [telegram] = fake.of("telegram")
    assert telegram.body == {"chat_id": str(CHAT), "text": "Hello Anna Nowak, Oak table is ordered.",
                             "disable_web_page_preview": False}
    text, template = sorted(fake.of("whatsapp"), key=lambda request: request.body["type"] == "template")
    assert text.body == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "48601234567",
                         "type": "text", "text": {"preview_url": True, "body": "Oak table: 1200 EUR"}}
    assert template.body["template"] == {"name": "order_ready", "language": {"code": "pl"}}
    assert fake.broken() == []

    sent = await eventually(lambda: _sent(http, deal["id"], 3), timeout=20)
    assert sorted((message["channel"], message["to"]) for message in sent) == [
        ("telegram", str(CHAT)), ("whatsapp", NUMBER), ("whatsapp", NUMBER)]
    assert all(message["provider_id"] for message in sent)

    # WhatsApp reports the message delivered, then read: the message's status follows.
    wamid = next(message["provider_id"] for message in sent if message["body"] == "Oak table: 1200 EUR")
    for state in ("delivered", "read"):
        raw, headers = whatsapp_signed(whatsapp_status(wamid, state, "48601234567"))
        ok(await channel_stack.anon.post("/channels/whatsapp/webhook", content=raw, headers=headers))
    [read] = [message for message in await _messages(http, deal["id"]) if message["provider_id"] == wamid]
    assert read["status"] == "read"


async def _messages(http, deal_id: int) -> list[dict]:
    return ok(await http.get("/messages", params={"deal_id": deal_id}))


async def _sent(http, deal_id: int, count: int) -> list[dict] | None:
    messages = [message for message in await _messages(http, deal_id) if message["status"] == "sent"]
    return messages if len(messages) == count else None


async def test_a_client_without_an_identity_fails_the_rule_once_with_the_reason(channel_stack, fake):
    http = channel_stack.http
    manager = await user(http, "Marek")
    flow = await pipeline(http, ["NEW", "WON"])
    await automate(http, flow["id"], {"NEW": {"rules": [
        {"name": "tg", "type": "send_channel_message", "settings": {"channel": "telegram", "text": "Hello"}}]}})
    deal = await _deal(http, flow, manager, await _client(http, whatsapp=NUMBER))
    [failed] = await eventually(lambda: timeline(http, deal["id"], kind="rule_failed"), timeout=20)
    assert "no telegram identity" in failed["text"] and "channels" in failed["text"]
    assert fake.requests == []


async def test_a_missed_call_moves_the_deal_through_the_call_finished_trigger(channel_stack, fake):
    http, anon = channel_stack.http, channel_stack.anon
    manager = await user(http, "Marek")
    flow = await pipeline(http, ["NEW", "ANSWERED", "MISSED"])
    await automate(http, flow["id"], {
        "NEW": {"rules": [{"name": "ring", "type": "call_client",
                           "settings": {"text": "Hello {{Deal.Contact.Name}}, your {{Deal.Title}} is ready."}}]},
        "ANSWERED": {"triggers": [{"name": "picked up", "type": "call_finished", "filter": {"outcome": "answered"}}]},
        "MISSED": {"triggers": [{"name": "no answer", "type": "call_finished", "filter": {"outcome": "missed"}}]},
    })
    deal = await _deal(http, flow, manager, await _client(http))
    [placed] = await eventually(lambda: fake.of("twilio"), timeout=30)
    assert placed.body["To"] == NUMBER and placed.body["From"] == CALL_FROM
    assert placed.body["Twiml"] == ('<Response><Say language="en-US">Hello Anna Nowak, your Oak table is ready.'
                                    '</Say></Response>')
    assert placed.body["StatusCallback"] == "http://testserver/channels/calls/status"
    assert placed.body["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    [call] = await eventually(lambda: _placed(http, deal["id"]), timeout=20)
    sid = call["provider_id"]
    assert sid.startswith("CA") and call["status"] == "queued"

    url = "http://testserver/channels/calls/status"
    body, headers = twilio_signed(url, call_status(sid, "no-answer", NUMBER))
    forged = {**headers, "X-Twilio-Signature": "AAAA" + headers["X-Twilio-Signature"][4:]}
    refused = await anon.post("/channels/calls/status", content=body, headers=forged)
    assert refused.status_code == 401 and refused.json()["detail"][0]["loc"] == ["header", "X-Twilio-Signature"]
    assert ok(await http.get(f"/deals/{deal['id']}"))["stage"] == "NEW"

    for state in ("ringing", "no-answer", "no-answer"):
        body, headers = twilio_signed(url, call_status(sid, state, NUMBER))
        ok(await anon.post("/channels/calls/status", content=body, headers=headers))
    await eventually(lambda: _stage(http, deal["id"], "MISSED"), timeout=20)
    [call] = await _placed(http, deal["id"])
    assert call["status"] == "no-answer"
    finished = [entry for entry in await timeline(http, deal["id"], kind="event_received")
                if entry["data"]["type"] == "call_finished"]
    assert len(finished) == 1 and finished[0]["data"]["matched"] == "no answer"


async def _placed(http, deal_id: int) -> list[dict]:
    return [message for message in await _messages(http, deal_id) if message["channel"] == "call"
            and message["provider_id"]]


async def test_a_telegram_reply_moves_the_deal_of_the_client_who_wrote(channel_stack, fake):
    http, anon = channel_stack.http, channel_stack.anon
    manager = await user(http, "Marek")
    flow = await pipeline(http, ["NEW", "REPLIED"])
    await automate(http, flow["id"], {"REPLIED": {"triggers": [
        {"name": "said yes", "type": "channel_reply", "filter": {"channel": "telegram", "text_contains": ["yes"]}}]}})
    other = await _deal(http, flow, manager, await _client(http, telegram=999000111), "Someone else's")
    deal = await _deal(http, flow, manager, await _client(http, telegram=CHAT), "Pine shelf")
    await eventually(lambda: _stage(http, deal["id"], "NEW"))

    wrong = await anon.post("/channels/telegram/webhook", json=telegram_update(7001, CHAT, "Yes please"),
                            headers=telegram_headers("not-the-secret"))
    assert wrong.status_code == 401
    assert await timeline(http, deal["id"], kind="event_received") == []

    for _ in range(2):
        answer = ok(await anon.post("/channels/telegram/webhook", json=telegram_update(7001, CHAT, "Yes please!"),
                                    headers=telegram_headers()))
        assert answer["status"] == "accepted" and answer["items"] == [{"entity": "deal", "id": deal["id"]}]
    await eventually(lambda: _stage(http, deal["id"], "REPLIED"), timeout=20)
    events = await timeline(http, deal["id"], kind="event_received")
    assert len(events) == 1 and events[0]["data"]["matched"] == "said yes"
    assert ok(await http.get(f"/deals/{other['id']}"))["stage"] == "NEW"

    stranger = ok(await anon.post("/channels/telegram/webhook", json=telegram_update(7002, 42, "Yes"),
                                  headers=telegram_headers()))
    assert stranger["status"] == "ignored"


async def test_a_whatsapp_webhook_with_a_bad_signature_is_refused_and_a_signed_one_moves_the_deal(channel_stack, fake):
    http, anon = channel_stack.http, channel_stack.anon
    manager = await user(http, "Marek")
    flow = await pipeline(http, ["NEW", "REPLIED"])
    await automate(http, flow["id"], {"REPLIED": {"triggers": [{"name": "wrote", "type": "channel_reply",
                                                                 "filter": {"channel": "whatsapp"}}]}})
    deal = await _deal(http, flow, manager, await _client(http, whatsapp=NUMBER))
    await eventually(lambda: _stage(http, deal["id"], "NEW"))

    raw, headers = whatsapp_signed(whatsapp_message("48601234567", "When is the delivery?", "wamid.A1"),
                                   secret="not-the-app-secret")
    refused = await anon.post("/channels/whatsapp/webhook", content=raw, headers=headers)
    assert refused.status_code == 401 and refused.json()["detail"][0]["loc"] == ["header", "X-Hub-Signature-256"]
    unsigned = await anon.post("/channels/whatsapp/webhook", content=raw, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    assert await timeline(http, deal["id"], kind="event_received") == []
    assert ok(await http.get(f"/deals/{deal['id']}"))["stage"] == "NEW"

    raw, headers = whatsapp_signed(whatsapp_message("48601234567", "When is the delivery?", "wamid.A1"))
    ok(await anon.post("/channels/whatsapp/webhook", content=raw, headers=headers))
    await eventually(lambda: _stage(http, deal["id"], "REPLIED"), timeout=20)

    challenge = await anon.get("/channels/whatsapp/webhook", params={
        "hub.mode": "subscribe", "hub.verify_token": "verify-me-0123456789", "hub.challenge": "1158201444"})
    assert (challenge.status_code, challenge.text) == (200, "1158201444")
    wrong = await anon.get("/channels/whatsapp/webhook", params={
        "hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"})
    assert wrong.status_code == 403


@pytest.mark.parametrize(("settings", "field"), [
    ({"channel": "telegram", "text": "Hi", "to": "not a chat"}, "to"),
    ({"channel": "whatsapp", "text": "Hi", "to": "601 234"}, "to"),
    ({"channel": "whatsapp", "text": "Hi", "template": "unknown_template"}, "template"),
    ({"channel": "telegram", "text": "Hi", "template": "order_ready"}, "template"),
    ({"channel": "telegram", "text": "x" * 4097}, "text"),
    ({"channel": "signal", "text": "Hi"}, "channel"),
    ({"channel": "telegram"}, "text"),
])
async def test_bad_channel_rules_are_refused_at_save_naming_the_field(channel_stack, settings, field):
    http = channel_stack.http
    flow = await pipeline(http, ["NEW"])
    answer = await http.put(f"/pipelines/{flow['id']}/automation", json={"stages": {"NEW": {"rules": [
        {"name": "m", "type": "send_channel_message", "settings": settings}]}}})
    assert answer.status_code == 422, answer.text
    assert field in [str(part) for part in answer.json()["detail"][0]["loc"]], answer.json()
    assert ok(await http.get(f"/pipelines/{flow['id']}/automation"))["stages"] == {}


async def test_bad_call_rules_contacts_and_webhooks_are_4xx_and_change_nothing(channel_stack, fake):
    http, anon = channel_stack.http, channel_stack.anon
    flow = await pipeline(http, ["NEW"])
    for settings in ({"text": "Hi", "to": "12"}, {"text": ""}, {"text": "x" * 1001}):
        answer = await http.put(f"/pipelines/{flow['id']}/automation", json={"stages": {"NEW": {"rules": [
            {"name": "c", "type": "call_client", "settings": settings}]}}})
        assert answer.status_code == 422, answer.text
    contact = await _client(http, telegram=CHAT)
    for channels in ({"telegram": "chat"}, {"whatsapp": "601234567"}, {"signal": "1"}, {"telegram": True}):
        answer = await http.patch(f"/contacts/{contact['id']}", json={"channels": channels})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][:2] == ["body", "channels"], answer.text
    assert ok(await http.get(f"/contacts/{contact['id']}"))["channels"] == {"telegram": str(CHAT)}
    changed = ok(await http.patch(f"/contacts/{contact['id']}", json={"channels": {"whatsapp": "+48 601 234 567"}}))
    assert changed["channels"] == {"whatsapp": NUMBER}
    for path, content in [("/channels/telegram/webhook", b"{not json"), ("/channels/telegram/webhook", b"[]"),
                          ("/channels/telegram/webhook", b'{"update_id": 1, "message": {"chat": {"id": "x"}}}')]:
        answer = await anon.post(path, content=content, headers=telegram_headers())
        assert 400 <= answer.status_code < 500, (path, content, answer.status_code)
    raw, headers = whatsapp_signed({"object": "whatsapp_business_account", "entry": "nope"})
    assert (await anon.post("/channels/whatsapp/webhook", content=raw, headers=headers)).status_code == 422
    body, headers = twilio_signed("http://testserver/channels/calls/status", [("CallSid", "CA1"), ("CallStatus", "x")])
    assert (await anon.post("/channels/calls/status", content=body, headers=headers)).status_code == 422
    assert fake.requests == []


async def test_a_simulation_records_the_messages_and_the_call_and_sends_nothing(channel_stack, fake):
    http = channel_stack.http
    manager = await user(http, "Marek")
    flow = await pipeline(http, ["NEW", "MISSED"])
    contact = await _client(http, telegram=CHAT, whatsapp=NUMBER)
    draft = {"stages": {"NEW": {"rules": [
        {"name": "tg", "type": "send_channel_message",
         "settings": {"channel": "telegram", "text": "Hi {{Deal.Title}}"}},
        {"name": "wa", "type": "send_channel_message", "delay": "1d",
         "settings": {"channel": "whatsapp", "text": "Still there, {{Deal.Contact.Name}}?"}},
        {"name": "ring", "type": "call_client", "delay": "2d", "settings": {"text": "Your {{Deal.Title}} is ready"}},
    ]}}}
    answer = ok(await http.post("/simulations", json={
        "pipeline_id": flow["id"], "automation": draft, "horizon": "5d",
        "item": {"title": "Oak table", "responsible_id": manager["id"], "contact_id": contact["id"]},
    }, timeout=120))
    shown = [(message["rule"], message["channel"], message["to"], message["body"], message["status"])
             for message in answer["effects"]["messages"]]
    assert shown == [("tg", "telegram", str(CHAT), "Hi Oak table", "recorded"),
                     ("wa", "whatsapp", NUMBER, "Still there, Anna Nowak?", "recorded"),
                     ("ring", "call", NUMBER, "Your Oak table is ready", "recorded")]
    assert fake.requests == []
    assert ok(await http.get("/messages")) == []
