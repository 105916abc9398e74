"""The senders rules reach the outside by, as one set a worker is built with: SMTP, the SMS provider of the
settings, the messenger channels, the call provider, outbound HTTP. A simulation builds its worker with recorders in
their place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from activities.transports.calls import Caller, make_caller
from activities.transports.channels import ChannelSender, make_channel_sender
from activities.transports.mail import MailSettings, SendResult, send_message
from activities.transports.net import safe_request
from activities.transports.sms import SmsProvider, make_sms_provider


async def http_request(rule: str, method: str, url: str, **options: Any) -> httpx.Response:
    """One outbound call of rule `rule` (the name lets a recorder answer per rule)."""
    return await safe_request(method, url, **options)


@dataclass(frozen=True)
class Transports:
    send_mail: Callable[[MailSettings, EmailMessage], Awaitable[SendResult]] = send_message
    sms_provider: Callable[[Any], SmsProvider] = make_sms_provider
    channel_sender: Callable[[Any, str], ChannelSender] = make_channel_sender
    caller: Callable[[Any], Caller] = make_caller
    http: Callable[..., Awaitable[httpx.Response]] = http_request
