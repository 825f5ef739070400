"""Where a webhook may be sent, and the one way it is sent.

A webhook URL is the owner's to choose, so it must not be a way into buddy's own network: https
only, and every address its host resolves to public (no loopback, private, link-local, shared,
reserved or multicast address), outside DEBUG unless `BUDDY_WEBHOOK_ALLOW_PRIVATE=true`. The rule
is checked when the endpoint is registered and again before every attempt (DNS can change), and
the connection goes to the address that was checked (pinned: no second resolution a rebinding
DNS server could answer differently), with TLS still verified against the URL's host name.
Redirects are not followed, the whole attempt has a timeout, and at most a few KiB of the answer
are read.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

# Of the receiver's answer, only this much is read (and nothing of it is kept).
MAX_RESPONSE_BYTES = 4096
MAX_URL_LENGTH = 500

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    """The URL is not one buddy may send to; the message says why (safe to show its owner)."""


def private_allowed() -> bool:
    return bool(settings.DEBUG or settings.BUDDY_WEBHOOK_ALLOW_PRIVATE)


def _split(url: object) -> tuple[str, str, int]:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"An absolute https URL of at most {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("An absolute https URL is required.") from None
    allowed_schemes = {"https", "http"} if private_allowed() else {"https"}
    if parts.scheme not in allowed_schemes:
        raise UnsafeUrl("The URL must use https.")
    if not parts.hostname or any(ch.isspace() for ch in url):
        raise UnsafeUrl("An absolute https URL is required.")
    if "@" in parts.netloc or "#" in url:
        raise UnsafeUrl("The URL must not carry credentials (user@) or a fragment.")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve_checked(host: str, port: int) -> IPAddress:
    """The address to connect to for `host`: every address it resolves to must be public (unless
    private destinations are allowed); the first is returned, to be pinned for the connection."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise UnsafeUrl(f"The host {host!r} does not resolve.") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise UnsafeUrl(f"The host {host!r} does not resolve.")
    if not private_allowed():
        for address in addresses:
            if not _is_public(address):
                raise UnsafeUrl(
                    f"The host resolves to {address}, a loopback, private, link-local or "
                    "otherwise non-public address."
                )
    return addresses[0]


def url_validate(url: object) -> str:
    """`url` if buddy may send webhooks to it (resolved now), else UnsafeUrl."""
    _scheme, host, port = _split(url)
    resolve_checked(host, port)
    assert isinstance(url, str)
    return url


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt went: the receiver's status code (None if it never answered) and, for a
    failure, a few words on why."""

    status_code: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, *, body: bytes, headers: dict[str, str]) -> Outcome:
    """POST `body` to `url`, checked and pinned as the module says; never raises for the
    receiver's faults (they are the Outcome)."""
    timeout = settings.BUDDY_WEBHOOK_TIMEOUT_SECONDS
    try:
        scheme, host, port = _split(url)
        address = resolve_checked(host, port)
    except UnsafeUrl as exc:
        return Outcome(None, f"refused: {exc}"[:200])
    parts = urlsplit(url)
    pinned_host = f"[{address}]" if address.version == 6 else str(address)
    target = urlunsplit((scheme, f"{pinned_host}:{port}", parts.path or "/", parts.query, ""))
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    deadline = time.monotonic() + timeout
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "POST",
                target,
                content=body,
                headers={**headers, "Host": parts.netloc},
                extensions=extensions,
            ) as response,
        ):
            read = 0
            for chunk in response.iter_raw():
                read += len(chunk)
                if read >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
                    break
            return Outcome(response.status_code)
    except httpx.TimeoutException:
        return Outcome(None, f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Outcome(None, f"{type(exc).__name__}: could not deliver"[:200])
