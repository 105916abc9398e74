"""Outbound HTTP that refuses to reach private networks (SSRF guard).

Webhooks and HTTP SMS providers call URLs that users type in. Unless
``STAGEFLOW_ALLOW_PRIVATE_URLS`` is true, such a call may only reach public
addresses: every host is resolved, and the request is refused when any of its
addresses is loopback, private, link-local, multicast, reserved, unspecified
or otherwise not globally routable (IPv4 addresses embedded in IPv6 ones are
judged as IPv4).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolves (host, port) to IP address strings; injectable for tests."""

ALLOWED_SCHEMES = ("http", "https")
MAX_URL_LENGTH = 2048
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CROSS_ORIGIN_HEADERS = frozenset(
    {"accept", "accept-encoding", "content-type", "content-length", "transfer-encoding", "user-agent"}
)
"""The only request headers a redirect to another origin keeps (credentials never follow)."""
ALLOW_HINT = "set STAGEFLOW_ALLOW_PRIVATE_URLS=true to allow"

_NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")


class UrlRefused(Exception):
    """The URL may not be called: bad scheme, non-public address, too many redirects."""


class ResponseTooLarge(Exception):
    """The response body exceeded the size the caller accepts."""


def redact_url(url: httpx.URL | str) -> str:
    """The URL without credentials, query or fragment, safe for messages and logs."""
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else url
    except httpx.InvalidURL:
        return "<invalid URL>"
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))


def validate_url_syntax(url: object) -> str | None:
    """Save-time check of an outbound URL; the error message, or None when the URL is usable."""
    if not isinstance(url, str) or not url.strip():
        return "must be a non-empty URL string"
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    if any(ch.isspace() for ch in url):
        return "must not contain whitespace"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"is not a valid URL ({exc})"
    if parsed.scheme not in ALLOWED_SCHEMES:
        return f"must start with http:// or https:// (got {parsed.scheme or 'no'} scheme)"
    if not parsed.host:
        return "must name a host"
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return f"has an invalid port {parsed.port}"
    return None


def _translated_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d) address stands for."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_PREFIX:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _tunnelled_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses carried inside 6to4 and Teredo addresses."""
    return [v4 for v4 in (ip.sixtofour, ip.teredo[1] if ip.teredo else None) if v4 is not None]


def refusal_kind(ip: IPAddress) -> str | None:
    """Why an address may not be reached ("loopback", "private", ...), or None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address):
        translated = _translated_ipv4(ip)
        if translated is not None:
            return refusal_kind(translated)
        for v4 in _tunnelled_ipv4(ip):
            kind = refusal_kind(v4)
            if kind is not None:
                return kind
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("non-public", not ip.is_global),
    )
    return next((kind for kind, hit in checks if hit), None)


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (the event loop's getaddrinfo, off the loop's thread)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpx.ConnectError(f"cannot resolve host {host!r}: {exc.strerror}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _parse_http_url(url: httpx.URL | str) -> httpx.URL:
    error = validate_url_syntax(str(url))
    if error is not None:
        raise UrlRefused(f"URL {redact_url(url)} {error}")
    return httpx.URL(url) if isinstance(url, str) else url


async def _resolve(host: str, port: int, resolver: Resolver | None) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    addresses = await (resolver or system_resolver)(host, port)
    if not addresses:
        raise httpx.ConnectError(f"host {host!r} has no addresses")
    return [ipaddress.ip_address(address.split("%", 1)[0]) for address in addresses]


async def resolve_public(url: httpx.URL | str, *, resolver: Resolver | None = None) -> list[IPAddress]:
    """Resolve the URL's host and return its addresses, or raise UrlRefused if any is not public."""
    parsed = _parse_http_url(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await _resolve(parsed.host, port, resolver)
    for address in addresses:
        kind = refusal_kind(address)
        if kind is not None:
            raise UrlRefused(
                f"URL {redact_url(parsed)} resolves to a {kind} address {address}; {ALLOW_HINT}"
            )
    return addresses


async def registration_refusal(
    url: str, *, allow_private: bool, resolver: Resolver | None = None, timeout: float = 3.0
) -> str | None:
    """Why a URL that will be called later (an app's rule handler) is refused now, or None. The rule of every
    call: unless allow_private, an address that is not public is refused. A host that does not resolve now is
    accepted; every call checks it again."""
    if allow_private:
        return None
    try:
        await asyncio.wait_for(resolve_public(url, resolver=resolver), timeout)
    except UrlRefused as refused:
        return str(refused)
    except (httpx.HTTPError, OSError, TimeoutError):
        return None
    return None


async def check_url(url: httpx.URL | str, *, allow_private: bool, resolver: Resolver | None = None) -> None:
    """Raise UrlRefused unless the URL is http(s) and (unless allow_private) all its addresses are public.

    A host that cannot be resolved raises httpx.ConnectError (a transient network failure).
    """
    await _hop_addresses(url, allow_private, resolver)


async def _hop_addresses(
    url: httpx.URL | str, allow_private: bool, resolver: Resolver | None
) -> list[IPAddress] | None:
    """The checked addresses to connect to, or None to let httpx resolve (private addresses allowed)."""
    if allow_private:
        _parse_http_url(url)
        return None
    return await resolve_public(url, resolver=resolver)


def pin_request(request: httpx.Request, address: IPAddress) -> httpx.Request:
    """The same request, connected to ``address`` while keeping the Host header and TLS server name."""
    url = request.url
    headers = httpx.Headers(request.headers)
    headers["Host"] = url.netloc.decode("ascii")
    extensions = dict(request.extensions)
    if url.scheme == "https":
        extensions["sni_hostname"] = url.host
    return httpx.Request(
        request.method,
        url.copy_with(host=str(address)),
        headers=headers,
        content=request.content,
        extensions=extensions,
    )


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    """The decoded body; the limit applies after decompression too."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(f"response of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(f"response exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _send_once(
    client: httpx.AsyncClient, request: httpx.Request, addresses: Sequence[IPAddress] | None, limit: int
) -> httpx.Response:
    """Send one hop (to each checked address in turn until one connects) and read its body."""
    attempts = [pin_request(request, address) for address in addresses] if addresses else [request]
    for number, attempt in enumerate(attempts, start=1):
        try:
            response = await client.send(attempt, stream=True)
        except httpx.ConnectError:
            if number == len(attempts):
                raise
            continue
        try:
            body = await _read_limited(response, limit)
        finally:
            await response.aclose()
        headers = httpx.Headers(response.headers)
        for name in ("content-encoding", "content-length", "transfer-encoding"):
            headers.pop(name, None)
        return httpx.Response(
            response.status_code, headers=headers, content=body, request=request,
            extensions={"http_version": response.extensions.get("http_version", b"HTTP/1.1")},
        )
    raise httpx.ConnectError("no address to connect to", request=request)


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _redirect_request(request: httpx.Request, response: httpx.Response) -> httpx.Request:
    """The next hop's request, following browser rules: 303 (and 301/302 after POST) become GET."""
    target = request.url.join(response.headers["location"])
    method = request.method
    content: bytes | None = request.content
    headers = httpx.Headers(request.headers)
    becomes_get = (response.status_code == 303 and method != "HEAD") or (
        response.status_code in (301, 302) and method == "POST"
    )
    if becomes_get:
        method, content = "GET", None
        for name in ("content-length", "content-type", "transfer-encoding"):
            headers.pop(name, None)
    if not _same_origin(request.url, target):
        for name in [name for name in headers if name.lower() not in CROSS_ORIGIN_HEADERS]:
            headers.pop(name, None)
    headers.pop("host", None)
    return httpx.Request(method, target, headers=headers, content=content, extensions=request.extensions)


async def safe_request(
    method: str,
    url: str,
    *,
    allow_private: bool,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    content: bytes | str | None = None,
    timeout: float = 10,
    max_redirects: int = 3,
    max_response_bytes: int = 1_000_000,
    resolver: Resolver | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.Response:
    """Send an HTTP request that may only reach public addresses (unless ``allow_private``).

    - Redirects are followed here, not by httpx: each hop's URL is checked with
      the same rules before anything is sent to it, at most ``max_redirects``
      hops (more raises UrlRefused). 303, and 301/302 after POST, continue as
      GET without a body. A redirect to another scheme/host/port keeps only
      the content headers (CROSS_ORIGIN_HEADERS): Authorization, API-key and
      other credential headers never follow it.
    - DNS rebinding: each hop's host is resolved exactly once, the addresses
      are checked, and the connection is made to a checked address (the URL's
      host is replaced by the IP) while the Host header and the TLS server name
      (SNI, also used for certificate verification) stay the original host. A
      second, different DNS answer is never consulted.
    - Environment proxies are ignored (a proxy would connect on our behalf).
    - ``timeout`` bounds each connection phase and each whole hop; a body over
      ``max_response_bytes`` raises ResponseTooLarge.

    Raises UrlRefused for a refused URL, httpx.TransportError (ConnectError,
    TimeoutException, ...) for network failures. ``resolver`` and ``transport``
    exist for tests.
    """
    request = httpx.Request(
        method.upper(), _parse_http_url(url), headers=headers, json=json, content=content,
        extensions={"timeout": httpx.Timeout(timeout).as_dict()},
    )
    async with httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False) as client:
        for hop in range(max_redirects + 1):
            addresses = await _hop_addresses(request.url, allow_private, resolver)
            try:
                async with asyncio.timeout(timeout):
                    response = await _send_once(client, request, addresses, max_response_bytes)
            except TimeoutError as exc:
                raise httpx.ReadTimeout(
                    f"no complete response from {redact_url(request.url)} within {timeout:g}s", request=request
                ) from exc
            if response.status_code not in REDIRECT_STATUSES or "location" not in response.headers:
                return response
            if hop == max_redirects:
                break
            try:
                request = _redirect_request(request, response)
            except httpx.InvalidURL as exc:
                raise UrlRefused(f"URL {redact_url(request.url)} redirected to an invalid URL ({exc})") from exc
    raise UrlRefused(f"URL {redact_url(url)} redirected more than {max_redirects} times")
