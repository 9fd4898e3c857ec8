"""One HTTP POST to a notification receiver, refused where it would reach a private network.

One deployment serves many orgs, and each org's config names URLs: without a check, a
config could make the worker call internal services (cloud metadata at 169.254.169.254,
localhost, private ranges). Every address a host name resolves to is checked by the
resolver the connection is made through (a DNS answer that changes between a check and the
connection cannot slip past), literal addresses before the request; redirects are not
followed; only https. NOTIFY_ALLOW_PRIVATE_NETWORKS=1 lifts all three for a private
deployment. Errors never contain the URL (it may be a secret, as a Slack webhook's is).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

# A receiver answers a small POST in well under this; a slow one must not hold a job slot.
TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
# Of the receiver's answer, only the start is read (and shown, redacted, when it failed).
MAX_ANSWER = 2048
SHOWN_ANSWER = 200


class DeliveryError(Exception):
    """The message was not delivered. The text is safe to store and show: no URL, no secret.
    `retry_after`: the receiver asked to wait this many seconds (HTTP 429 / 503)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DestinationRefused(DeliveryError):
    """The URL is not allowed here (scheme, or an address in a private network)."""


class _Blocked(OSError):
    """Raised inside aiohttp's connector by the resolver; unwrapped into DestinationRefused."""


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def address_refusal(host: str) -> str | None:
    """Why connecting to this IP address is refused (None: it is a public address)."""
    addr = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone index
    if isinstance(addr, ipaddress.IPv6Address):
        # IPv4 carried inside IPv6 is judged as the IPv4 address it reaches: mapped
        # (::ffff:a.b.c.d), 6to4 (2002::/16) and NAT64 (64:ff9b::/96, which Python counts
        # as global, yet on a NAT64 network 64:ff9b::a9fe:a9fe is 169.254.169.254).
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        elif addr.sixtofour is not None:
            addr = addr.sixtofour
        elif addr in _NAT64:
            addr = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.is_global and not addr.is_multicast:
        return None
    return (f"the receiver's address {addr} is in a private, loopback, link-local or "
            "reserved network (set NOTIFY_ALLOW_PRIVATE_NETWORKS=1 to allow that)")


class PublicResolver(AbstractResolver):
    """The default resolver, refusing names that resolve to any non-public address."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            why = address_refusal(result["host"])
            if why is not None:
                raise _Blocked(why)
        return results

    async def close(self) -> None:
        await self._inner.close()


def check_url(url: str, *, allow_private: bool) -> URL:
    """The parsed URL, or DestinationRefused/DeliveryError saying why it cannot be used."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise DeliveryError("the URL is not a valid URL") from None
    if parsed.scheme != "https" and not (allow_private and parsed.scheme == "http"):
        raise DestinationRefused("only https:// URLs are allowed (set "
                                 "NOTIFY_ALLOW_PRIVATE_NETWORKS=1 to allow http://)")
    if not parsed.host or parsed.user is not None or parsed.password is not None:
        raise DeliveryError("the URL has no host, or carries a user or password")
    if not allow_private:
        try:
            why = address_refusal(parsed.host)
        except ValueError:
            why = None  # a host name: the resolver checks what it resolves to
        if why is not None:
            raise DestinationRefused(why)
    return parsed


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # the HTTP-date form: the backoff applies


async def post(url: str, body: bytes, headers: Mapping[str, str], *, allow_private: bool,
               redact: Callable[[str], str]) -> None:
    """POST `body`; returns on a 2xx answer, raises DeliveryError otherwise. `redact`
    removes the channel's secrets from what the receiver answered before it is shown."""
    target = check_url(url, allow_private=allow_private)
    connector = aiohttp.TCPConnector(resolver=None if allow_private else PublicResolver(),
                                     use_dns_cache=False, limit=1)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT,
                                     trust_env=False) as session:
        try:
            async with session.post(target, data=body, headers=dict(headers),
                                    allow_redirects=False) as resp:
                status = resp.status
                answer = await resp.content.read(MAX_ANSWER)
                wait = _retry_after(resp.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, _Blocked):
                raise DestinationRefused(str(exc.os_error)) from None
            if isinstance(exc.os_error, socket.gaierror):
                raise DeliveryError("the receiver's host name could not be resolved") from None
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            raise DeliveryError(f"could not connect to the receiver ({reason})") from None
        except TimeoutError:
            raise DeliveryError(f"the receiver did not answer within "
                                f"{TIMEOUT.total:.0f} s") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"the request failed ({type(exc).__name__})") from None
    if 200 <= status < 300:
        return
    text = " ".join(answer.decode("utf-8", errors="replace").split())[:SHOWN_ANSWER]
    shown = redact(text)
    if 300 <= status < 400:
        shown = "redirects are not followed"
    raise DeliveryError(f"the receiver answered HTTP {status}" + (f": {shown}" if shown else ""),
                        retry_after=wait)
