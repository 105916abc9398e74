"""The senders of a simulation's worker: nothing leaves. An email is accepted as if the SMTP server took it, an
SMS, a messenger message or a call as if the provider did (the message rows in the scratch database are the record), and an outbound call gets
the answer the request scripts for its rule, or an empty 200, and is recorded either way."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
from temporalio import activity

from activities.transports.calls import Caller, RecordingCaller
from activities.transports.channels import ChannelSender, RecordingSender
from activities.transports.mail import MailSettings, SendResult
from activities.transports.net import redact_url
from activities.transports.senders import Transports
from activities.transports.sms import RecordingProvider, SmsProvider
from api.simulation.schemas import WebhookAnswer

RECORDED = "recorded by the simulation, not sent"


@dataclass
class Recorder:
    answers: dict[str, WebhookAnswer]
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def send_mail(self, settings: MailSettings, message: EmailMessage) -> SendResult:
        return SendResult(response=RECORDED)

    def sms_provider(self, settings: Any) -> SmsProvider:
        return RecordingProvider()

    def channel_sender(self, settings: Any, channel: str) -> ChannelSender:
        return RecordingSender()

    def caller(self, settings: Any) -> Caller:
        return RecordingCaller()

    async def http(self, rule: str, method: str, url: str, **options: Any) -> httpx.Response:
        answer = self.answers.get(rule)
        self.calls.append({
            "workflow_id": activity.info().workflow_id if activity.in_activity() else None,
            "rule": rule,
            "method": method,
            "url": redact_url(url),
            "body": options.get("json") if options.get("json") is not None else options.get("content"),
            "status": answer.status if answer else 200,
            "scripted": answer is not None,
        })
        request = httpx.Request(method, url)
        if answer is None or answer.json_body is None:
            return httpx.Response(answer.status if answer else 200, request=request)
        return httpx.Response(answer.status, json=answer.json_body, request=request)

    def transports(self) -> Transports:
        return Transports(send_mail=self.send_mail, sms_provider=self.sms_provider, http=self.http,
                          channel_sender=self.channel_sender, caller=self.caller)
