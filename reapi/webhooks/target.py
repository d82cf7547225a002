"""Where a webhook may be sent: `check_target` (the URL), `check_webhook_url` (a URL as a client or
operator gives it: check_target plus the length and character rules), `check_target_dns` (what it
resolves to) and `PublicResolver` (what the delivery actually connects to).

A target must be http or https, carry no user:password, and name a host that resolves only to
public unicast addresses: private (10/8, 172.16/12, 192.168/16, fc00::/7), loopback, link-local
(169.254/16 and fe80::/10, cloud metadata services live there), carrier-grade NAT, multicast,
reserved, unspecified and IPv4-mapped forms of them are refused, unless allow_private
(REAPI_WEBHOOK_ALLOW_PRIVATE=1). The check runs at submit and again at every delivery: the
Deliverer's connector resolves names through PublicResolver, so the address connected to is
the address checked (a name that re-resolves to 127.0.0.1 after the submit check is refused).
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

MAX_URL = 2048


class TargetRefused(ValueError):
    """A webhook URL reapi will not send to; the message is safe to show its owner."""


def public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _host_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def check_target(url: object, allow_private: bool) -> str:
    """The host of an acceptable webhook URL; TargetRefused (a ValueError) otherwise. Names are
    not resolved here (see check_target_dns); IP literals and localhost names are judged."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise TargetRefused(f"webhook_url must be an http(s) URL of at most {MAX_URL} characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("webhook_url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("webhook_url must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("webhook_url must not carry credentials")
    host = parts.hostname
    if not host or any(c.isspace() for c in url):
        raise TargetRefused("webhook_url is not a valid URL")
    if port == 0:
        raise TargetRefused("webhook_url is not a valid URL")
    if not allow_private:
        ip = _host_literal(host)
        if ip is not None and not public_address(ip):
            raise TargetRefused("webhook_url points to a private, loopback or link-local address")
        name = host.rstrip(".").lower()
        if ip is None and (name == "localhost" or name.endswith(".localhost") or "." not in name):
            raise TargetRefused("webhook_url points to a private, loopback or link-local address")
    return host


def check_webhook_url(url: object, allow_private: bool) -> str:
    """The rule a webhook URL meets when it is given (a task's `webhook_url`, a tasks key's default):
    a string of at most MAX_URL characters without spaces or control characters, an http(s) URL
    with a host (the task gateway's media-URL rule: no data: URIs), then check_target's scheme,
    credential and address rules. Returns the URL; TargetRefused, its message starting with
    "webhook_url", otherwise. Names are not resolved: every delivery checks the addresses again."""
    if not isinstance(url, str):
        raise TargetRefused("webhook_url must be an http(s) URL")
    if len(url) > MAX_URL:
        raise TargetRefused(f"webhook_url must be a URL of at most {MAX_URL} characters")
    if any(c <= " " or c == "\x7f" for c in url):
        raise TargetRefused("webhook_url must be an http(s) URL (no spaces or control characters)")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port
    except ValueError:
        raise TargetRefused("webhook_url must be an http(s) URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise TargetRefused("webhook_url must be a public http(s) URL")
    check_target(url, allow_private)
    return url


async def check_target_dns(url: object, allow_private: bool) -> None:
    """check_target, then resolve the host: every address must be public (unless allow_private),
    and it must resolve at all."""
    host = check_target(url, allow_private)
    if allow_private or _host_literal(host) is not None:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise TargetRefused("webhook_url's host does not resolve") from None
    if not infos or not all(public_address(ipaddress.ip_address(str(i[4][0]).split("%", 1)[0])) for i in infos):
        raise TargetRefused("webhook_url points to a private, loopback or link-local address")


class PrivateAddress(OSError):
    """A name that resolves only to addresses webhooks may not reach."""


class PublicResolver(AbstractResolver):
    """An aiohttp resolver that keeps only public addresses (all, when allow_private, and for the
    names in `trusted`, e.g. a channel's own host)."""

    def __init__(self, allow_private: bool, inner: AbstractResolver | None = None,
                 trusted: frozenset[str] = frozenset()) -> None:
        self.allow_private = allow_private
        self.inner = inner or ThreadedResolver()
        self.trusted = frozenset(h.lower().rstrip(".") for h in trusted)

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        if self.allow_private or host.lower().rstrip(".") in self.trusted:
            return results
        kept = [r for r in results if public_address(ipaddress.ip_address(r["host"].split("%", 1)[0]))]
        if not kept:
            raise PrivateAddress("the host resolves only to non-public addresses")
        return kept

    async def close(self) -> None:
        await self.inner.close()
