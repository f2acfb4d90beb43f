"""Fetch an item's image from a third-party address without letting the address reach our own network.

The name is resolved once and every address it gave is checked; the connection goes to the checked address, the
name only in the Host header and TLS SNI, so a second lookup (DNS rebinding) cannot swap the target. Redirects
are checked again hop by hop. Size is capped by Content-Length and while reading; a watchdog closes the socket at
the time cap, so a server dripping one byte at a time is cut. The type comes from the bytes, not the header.
Logs carry the host and the reason only: never the bytes, the path or the query string.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

# Not global, or global in name only: ranges an outside address must never lead to.
BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, with the cloud metadata service at 169.254.169.254
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "64:ff9b::/96",  # NAT64 reaches IPv4 space behind the gateway
        "64:ff9b:1::/48",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",  # unique local, with AWS's metadata service at fd00:ec2::254
        "fe80::/10",
        "ff00::/8",
    )
)
MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),  # after "RIFF" and the length
)


class MediaRefused(Exception):
    """An address or its answer was refused. ``reason`` is a short code, safe to store and show."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_seconds: float = 10.0
    max_redirects: int = 3


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str  # sniffed from the bytes
    host: str
    redirects: int


@dataclass
class AddressPolicy:
    """Which resolved addresses may be reached. ``allowed`` exists for tests that serve on 127.0.0.1: nothing in
    the platform's settings fills it, so production never reaches a private address."""

    resolver: Resolver | None = None
    allowed: frozenset[IPAddress] = field(default_factory=frozenset)

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        try:  # an address literal is its own answer
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            answers = (self.resolver or system_resolve)(host, port)
        except OSError as exc:
            raise MediaRefused("dns_failed", type(exc).__name__) from None
        addresses = []
        for answer in answers:
            try:
                addresses.append(ipaddress.ip_address(answer.split("%", 1)[0]))
            except ValueError:
                raise MediaRefused("dns_failed", "not an address") from None
        if not addresses:
            raise MediaRefused("dns_failed", "no address")
        return addresses

    def check(self, addresses: Iterable[IPAddress]) -> IPAddress:
        """The first address, when every address the name gave is public (one bad answer refuses them all:
        a client library picking another would reach it)."""
        addresses = list(addresses)
        for address in addresses:
            if address in self.allowed:
                continue
            if why := address_refusal(address):
                raise MediaRefused("private_address", why)
        return addresses[0]


def system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_refusal(address: IPAddress) -> str:
    """Why an address may not be fetched from, or '' when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            inner = address_refusal(embedded)
            return f"{inner} (inside {address.compressed})" if inner else ""
    for network in BLOCKED_NETWORKS:
        if address.version == network.version and address in network:
            return f"{address.compressed} is in {network}"
    if not address.is_global:
        return f"{address.compressed} is not a global address"
    return ""


def sniff(head: bytes) -> str:
    for magic, offset, kind in MAGIC:
        if head[offset : offset + len(magic)] == magic and (kind != "image/webp" or head[:4] == b"RIFF"):
            return kind
    return ""


def media_fetch(url: str, *, limits: FetchLimits | None = None, policy: AddressPolicy | None = None) -> Fetched:
    """The image at ``url``, or :class:`MediaRefused` saying why not."""
    limits = limits or FetchLimits()
    policy = policy or AddressPolicy()
    deadline = time.monotonic() + limits.max_seconds
    host = ""
    for hop in range(limits.max_redirects + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise MediaRefused("bad_scheme", parts.scheme or "none")
        host = parts.hostname or ""
        if not host:
            raise MediaRefused("bad_url", "no host")
        if parts.username or parts.password:
            raise MediaRefused("bad_url", "credentials in the address")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise MediaRefused("bad_url", "bad port") from None
        address = policy.check(policy.resolve(host, port))
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        status, location, data = _get(parts.scheme, host, port, address, target, limits, deadline)
        if status in (301, 302, 303, 307, 308):
            if not location:
                raise MediaRefused("bad_redirect", "no Location")
            url = urljoin(url, location)
            continue
        if status != 200:
            raise MediaRefused("http_status", str(status))
        kind = sniff(data[:16])
        if not kind:
            raise MediaRefused("not_an_image", "the bytes are no JPEG, PNG, GIF or WebP")
        return Fetched(data=data, content_type=kind, host=host, redirects=hop)
    raise MediaRefused("too_many_redirects", str(limits.max_redirects))


def _get(
    scheme: str, host: str, port: int, address: IPAddress, target: str, limits: FetchLimits, deadline: float
) -> tuple[int, str, bytes]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise MediaRefused("too_slow", f"over {limits.max_seconds:g}s")
    conn = _pinned_connection(scheme, host, port, str(address), remaining)
    timed_out = threading.Event()

    def cut() -> None:
        timed_out.set()
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(remaining, cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        conn.putheader("Accept", "image/jpeg, image/png, image/gif, image/webp")
        conn.putheader("User-Agent", "ops-platform-media-fetcher")
        conn.endheaders()
        response = conn.getresponse()
        if response.status in (301, 302, 303, 307, 308):
            return response.status, response.getheader("Location") or "", b""
        if response.status != 200:
            return response.status, "", b""
        declared = response.getheader("Content-Length")
        if (
            declared is not None
            and declared.strip().isascii()
            and declared.strip().isdigit()
            and int(declared) > limits.max_bytes
        ):
            raise MediaRefused("too_large", f"Content-Length over {limits.max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = response.read1(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > limits.max_bytes:
                raise MediaRefused("too_large", f"over {limits.max_bytes} bytes")
            chunks.append(chunk)
            if timed_out.is_set() or time.monotonic() > deadline:
                raise MediaRefused("too_slow", f"over {limits.max_seconds:g}s")
        if timed_out.is_set():
            raise MediaRefused("too_slow", f"over {limits.max_seconds:g}s")
        return 200, "", b"".join(chunks)
    except MediaRefused:
        raise
    except (OSError, http.client.HTTPException) as exc:
        if timed_out.is_set():
            raise MediaRefused("too_slow", f"over {limits.max_seconds:g}s") from None
        raise MediaRefused("fetch_failed", type(exc).__name__) from None
    finally:
        watchdog.cancel()
        conn.close()


def _pinned_connection(scheme: str, host: str, port: int, address: str, timeout: float) -> http.client.HTTPConnection:
    """A connection to ``address`` that speaks to ``host``: the Host header and (https) SNI and certificate
    check use the name, the socket goes to the address checked, with no second lookup."""

    def connect(_where: tuple[str, int], timeout: float | None = None, source: object = None) -> socket.socket:
        # A socket of the address's family connected to it: no getaddrinfo at all, not even for the literal.
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((address, port))
        except OSError:
            sock.close()
            raise
        return sock

    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn._create_connection = connect  # type: ignore[attr-defined]
    return conn


def media_log_refusal(url: str, refusal: MediaRefused) -> None:
    """One line naming the host and the reason; the path and query may carry tokens or personal data."""
    logger.info("media: refused a fetch from %s (%s)", urlsplit(url).hostname or "?", refusal.reason)
