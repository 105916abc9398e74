"""Outbound HTTP guard: private addresses refused, redirects checked hop by hop, DNS answers pinned.

Only loopback is ever contacted: hosts that "resolve" to public addresses go
through an injected resolver and an in-memory httpx transport.
"""

from __future__ import annotations

import gzip
import ipaddress
import json

import httpx
import pytest

from activities.transports.net import (
    ResponseTooLarge,
    UrlRefused,
    check_url,
    pin_request,
    refusal_kind,
    safe_request,
    validate_url_syntax,
)

PUBLIC_IP = "93.184.216.34"
OTHER_PUBLIC_IP = "8.8.4.4"


def fake_dns(table: dict[str, list[str]], calls: list[str] | None = None):
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        return table[host]

    return resolve


class Recorder:
    """An in-memory transport: records what would have been sent, answers from ``replies``."""

    def __init__(self, replies: dict[str, httpx.Response]) -> None:
        self.replies = replies
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.replies.get(request.url.path, httpx.Response(404))


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.5", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),
        ("64:ff9b::a00:5", "private"),
        (PUBLIC_IP, None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
    ],
)
def test_address_classification(address: str, kind: str | None) -> None:
    assert refusal_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1/hook", "loopback address 127.0.0.1"),
        ("http://10.0.0.5:8080/hook", "private address 10.0.0.5"),
        ("http://169.254.169.254/latest/meta-data/", "link-local address 169.254.169.254"),
        ("http://[::1]:8000/", "loopback address ::1"),
        ("https://[::ffff:127.0.0.1]/", "loopback address ::ffff:7f00:1"),
        ("http://0.0.0.0:8000/", "unspecified address 0.0.0.0"),
    ],
)
async def test_literal_private_addresses_refused_unless_allowed(url: str, shown: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        await check_url(url, allow_private=False)
    assert shown in str(refused.value)
    assert "set STAGEFLOW_ALLOW_PRIVATE_URLS=true to allow" in str(refused.value)
    await check_url(url, allow_private=True)


async def test_hostname_resolving_to_private_address_refused() -> None:
    resolver = fake_dns({"hooks.example.com": ["10.0.0.5"]})
    with pytest.raises(UrlRefused) as refused:
        await check_url("https://hooks.example.com/x?token=s3cret", allow_private=False, resolver=resolver)
    message = str(refused.value)
    assert message == (
        "URL https://hooks.example.com/x resolves to a private address 10.0.0.5; "
        "set STAGEFLOW_ALLOW_PRIVATE_URLS=true to allow"
    )
    assert "s3cret" not in message


async def test_any_private_answer_among_several_refuses() -> None:
    resolver = fake_dns({"mixed.example.com": [PUBLIC_IP, "::1"]})
    with pytest.raises(UrlRefused, match="loopback address ::1"):
        await check_url("http://mixed.example.com/", allow_private=False, resolver=resolver)


async def test_public_hostname_accepted() -> None:
    calls: list[str] = []
    resolver = fake_dns({"hooks.example.com": [PUBLIC_IP, "2606:4700:4700::1111"]}, calls)
    await check_url("https://hooks.example.com/x", allow_private=False, resolver=resolver)
    assert calls == ["hooks.example.com"]


async def test_localhost_name_refused_with_system_resolver() -> None:
    with pytest.raises(UrlRefused, match="loopback address"):
        await check_url("http://localhost:8000/", allow_private=False)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://example.com/", "example.com"])
async def test_non_http_schemes_refused_even_when_private_allowed(url: str) -> None:
    with pytest.raises(UrlRefused, match="http:// or https://"):
        await check_url(url, allow_private=True)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://hooks.example.com/a?b=1", None),
        ("http://10.0.0.5:8080/", None),
        ("", "non-empty"),
        (None, "non-empty"),
        ("ftp://example.com/", "http:// or https://"),
        ("https://exa mple.com/", "whitespace"),
        ("https:///path-only", "host"),
        ("http://example.com:99999/", "invalid port 99999"),
        ("http://exa_mple .com/", "whitespace"),
        ("http://[::1/", "valid URL"),
        ("https://example.com/" + "a" * 3000, "at most 2048"),
    ],
)
def test_validate_url_syntax(url: object, error: str | None) -> None:
    result = validate_url_syntax(url)
    if error is None:
        assert result is None
    else:
        assert result is not None and error in result


async def test_loopback_server_refused_before_any_traffic(http_server) -> None:
    with pytest.raises(UrlRefused, match="loopback address 127.0.0.1"):
        await safe_request("POST", http_server.url + "/hook", allow_private=False, json={"a": 1})
    assert http_server.received == []


async def test_loopback_server_reachable_when_allowed(http_server) -> None:
    http_server.route = lambda request: (200, b'{"ok": true, "echo": %s}' % request.body, {})
    response = await safe_request(
        "POST", http_server.url + "/hook", allow_private=True, json={"deal": "Sofa \u201cLux\u201d"},
        headers={"X-Trace": "1"},
    )
    assert response.status_code == 200
    assert response.json() == {"ok": True, "echo": {"deal": "Sofa \u201cLux\u201d"}}
    [request] = http_server.received
    assert (request.method, request.path, request.headers["x-trace"]) == ("POST", "/hook", "1")


async def test_redirects_followed_manually_with_method_rules(http_server) -> None:
    def route(request):
        if request.path == "/see-other":
            return 303, b"", {"Location": "/done"}
        if request.path == "/temporary":
            return 307, b"", {"Location": "/see-other"}
        return 200, b"finished", {}

    http_server.route = route
    response = await safe_request("POST", http_server.url + "/temporary", allow_private=True, json={"n": 1})
    assert response.text == "finished"
    assert str(response.url) == http_server.url + "/done"
    seen = [(r.method, r.path, r.body) for r in http_server.received]
    assert seen == [("POST", "/temporary", b'{"n":1}'), ("POST", "/see-other", b'{"n":1}'), ("GET", "/done", b"")]


async def test_redirect_loop_stops_after_max_redirects(http_server) -> None:
    http_server.route = lambda request: (302, b"", {"Location": "/again"})
    with pytest.raises(UrlRefused, match="redirected more than 3 times"):
        await safe_request("GET", http_server.url + "/start", allow_private=True, max_redirects=3)
    assert len(http_server.received) == 4


async def test_redirect_to_non_http_scheme_refused(http_server) -> None:
    http_server.route = lambda request: (302, b"", {"Location": "file:///etc/passwd"})
    with pytest.raises(UrlRefused, match="http:// or https://"):
        await safe_request("GET", http_server.url + "/", allow_private=True)


async def test_redirect_from_public_host_to_loopback_refused() -> None:
    recorder = Recorder({"/hook": httpx.Response(302, headers={"Location": "http://127.0.0.1:8000/admin"})})
    resolver = fake_dns({"hooks.example.com": [PUBLIC_IP]})
    with pytest.raises(UrlRefused, match="loopback address 127.0.0.1"):
        await safe_request(
            "POST", "http://hooks.example.com/hook", allow_private=False, json={},
            resolver=resolver, transport=recorder.transport,
        )
    assert [r.url.path for r in recorder.requests] == ["/hook"]


async def test_redirect_to_hostname_resolving_private_refused() -> None:
    recorder = Recorder({"/hook": httpx.Response(301, headers={"Location": "http://intranet.example.com/"})})
    resolver = fake_dns({"hooks.example.com": [PUBLIC_IP], "intranet.example.com": ["192.168.0.10"]})
    with pytest.raises(UrlRefused, match="private address 192.168.0.10"):
        await safe_request(
            "GET", "http://hooks.example.com/hook", allow_private=False, resolver=resolver,
            transport=recorder.transport,
        )
    assert len(recorder.requests) == 1


async def test_connection_goes_to_the_checked_address() -> None:
    """DNS rebinding: a later, different answer for the same host is never used."""
    answers = iter([[PUBLIC_IP], ["127.0.0.1"], ["127.0.0.1"]])
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    recorder = Recorder({"/hook": httpx.Response(200, json={"ok": True})})
    response = await safe_request(
        "POST", "https://hooks.example.com/hook?x=1", allow_private=False, json={"a": 1},
        resolver=rebinding, transport=recorder.transport,
    )
    assert response.json() == {"ok": True}
    assert str(response.url) == "https://hooks.example.com/hook?x=1"
    [sent] = recorder.requests
    assert sent.url.host == PUBLIC_IP
    assert sent.url.query == b"x=1"
    assert sent.headers["host"] == "hooks.example.com"
    assert sent.extensions["sni_hostname"] == "hooks.example.com"
    assert json.loads(sent.content) == {"a": 1}
    assert calls == ["hooks.example.com"]


async def test_credentials_dropped_on_cross_origin_redirect() -> None:
    recorder = Recorder({
        "/a": httpx.Response(307, headers={"Location": "/b"}),
        "/b": httpx.Response(307, headers={"Location": "https://other.example.com/c"}),
        "/c": httpx.Response(200),
    })
    resolver = fake_dns({"hooks.example.com": [PUBLIC_IP], "other.example.com": [OTHER_PUBLIC_IP]})
    await safe_request(
        "POST", "https://hooks.example.com/a", allow_private=False,
        headers={"Authorization": "Bearer k", "X-Api-Key": "s3cret", "Content-Type": "text/plain"},
        content=b"x", resolver=resolver, transport=recorder.transport,
    )
    seen = [
        (r.url.host, r.headers.get("host"), r.headers.get("authorization"), r.headers.get("x-api-key"),
         r.headers.get("content-type"), r.content)
        for r in recorder.requests
    ]
    assert seen == [
        (PUBLIC_IP, "hooks.example.com", "Bearer k", "s3cret", "text/plain", b"x"),
        (PUBLIC_IP, "hooks.example.com", "Bearer k", "s3cret", "text/plain", b"x"),
        (OTHER_PUBLIC_IP, "other.example.com", None, None, "text/plain", b"x"),
    ]


async def test_pinned_request_keeps_host_header_over_a_real_socket(http_server) -> None:
    request = httpx.Request("GET", f"http://hooks.example.com:{http_server.port}/ping")
    pinned = pin_request(request, ipaddress.ip_address("127.0.0.1"))
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.send(pinned)
    assert response.status_code == 200
    [received] = http_server.received
    assert received.headers["host"] == f"hooks.example.com:{http_server.port}"
    assert received.path == "/ping"


async def test_oversized_response_refused(http_server) -> None:
    http_server.route = lambda request: (200, b"x" * 5000, {})
    with pytest.raises(ResponseTooLarge):
        await safe_request("GET", http_server.url + "/", allow_private=True, max_response_bytes=1000)


async def test_compressed_response_decoded_once_and_limited_after_decompression(http_server) -> None:
    payload = json.dumps({"value": "y" * 3000}).encode()
    http_server.route = lambda request: (200, gzip.compress(payload), {"Content-Encoding": "gzip"})
    response = await safe_request("GET", http_server.url + "/", allow_private=True)
    assert response.json() == {"value": "y" * 3000}
    with pytest.raises(ResponseTooLarge):
        await safe_request("GET", http_server.url + "/", allow_private=True, max_response_bytes=1000)


async def test_unreachable_port_is_a_connect_error(closed_port: int) -> None:
    with pytest.raises(httpx.ConnectError):
        await safe_request("GET", f"http://127.0.0.1:{closed_port}/", allow_private=True)


async def test_host_without_addresses_is_a_connect_error() -> None:
    with pytest.raises(httpx.ConnectError, match="no addresses"):
        await check_url("http://empty.example.com/", allow_private=False, resolver=fake_dns({"empty.example.com": []}))
