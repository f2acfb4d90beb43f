"""Fetch an item's image from a third-party address without letting the address reach our own network.

The name is resolved once and every address it gave is checked; the connection goes to the checked address, the
name only in the Host header and TLS SNI, so a second lookup (DNS rebinding) cannot swap the target. Redirects
are checked again hop by hop. Size is capped by Content-Length and while reading; a watchdog closes the socket at
the time cap, so a server dripping one byte at a time is cut. The type comes from the bytes, not the header.
Logs carry the host and the reason only: never the bytes, the path or the query string.

Names are looked up through :class:`CachingResolver` in the worker: each lookup has a short cap of its own, one
lookup per name runs at a time (the others wait for it), and answers and failures are remembered for a while, so
a name that does not resolve costs one capped wait per name and period, not one per address.
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
    the platform's settings fills it. ``allowed_endpoints`` (address, port) pairs come only from the benchmark
    setting ``MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS`` (loopback addresses only, empty by default; docs/media.md), so
    production never reaches a private address."""

    resolver: Resolver | None = None
    allowed: frozenset[IPAddress] = field(default_factory=frozenset)
    allowed_endpoints: frozenset[tuple[IPAddress, int]] = field(default_factory=frozenset)

    def resolve(self, host: str, port: int, *, timeout: float | None = None) -> list[IPAddress]:
        """The name's addresses; ``timeout`` caps the wait when the resolver is a :class:`CachingResolver`."""
        try:  # an address literal is its own answer
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        resolver = self.resolver or system_resolve
        try:
            if isinstance(resolver, CachingResolver):
                answers: Sequence[str] = resolver.resolve(host, port, timeout=timeout)
            else:
                answers = resolver(host, port)
        except DnsFailed as exc:
            raise MediaRefused("dns_failed", exc.why) from None
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

    def check(self, addresses: Iterable[IPAddress], port: int | None = None) -> IPAddress:
        """The first address, when every address the name gave is public (one bad answer refuses them all:
        a client library picking another would reach it)."""
        addresses = list(addresses)
        for address in addresses:
            if address in self.allowed or (address, port) in self.allowed_endpoints:
                continue
            if why := address_refusal(address):
                raise MediaRefused("private_address", why)
        return addresses[0]


def system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class DnsFailed(Exception):
    """A lookup failed, timed out, or failed recently (remembered). ``why`` is short and safe to store."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass(frozen=True)
class _Entry:
    expires: float
    answers: tuple[str, ...] = ()
    failure: str = ""  # why it failed; "" for answers


@dataclass
class _Lookup:
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    entry: _Entry | None = None  # set before ``done``


class CachingResolver:
    """Name lookups for the fetcher with a cap, single flight and a memory, per worker process.

    ``getaddrinfo`` cannot be interrupted and, when the DNS server drops queries, waits its own 5 s per try: so
    each lookup runs on a thread of its own and a caller waits at most ``timeout`` (or less, when its fetch has
    less time left). While a name is being looked up, other callers of the same name wait for that lookup rather
    than starting their own. A failure (an error or a lookup that took the whole ``timeout``) is remembered for
    ``failure_ttl`` seconds and answers for ``ttl`` seconds; within those, a name costs no lookup at all. A
    lookup that outlives its callers still stores what it finds. Remembering answers does not weaken the address
    check: the addresses remembered are checked on every fetch, and the connection goes to the checked one.
    """

    def __init__(
        self,
        resolve: Resolver = system_resolve,
        *,
        timeout: float = 2.0,
        ttl: float = 60.0,
        failure_ttl: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self.timeout, self.ttl, self.failure_ttl, self.max_entries = timeout, ttl, failure_ttl, max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int], _Entry] = {}
        self._in_flight: dict[tuple[str, int], _Lookup] = {}

    def __call__(self, host: str, port: int) -> Sequence[str]:
        return self.resolve(host, port)

    def resolve(self, host: str, port: int, *, timeout: float | None = None) -> tuple[str, ...]:
        """The name's answers, or :class:`DnsFailed`."""
        key = (host.lower().rstrip("."), port)
        start = False
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires > self._clock():
                return self._answer(entry)
            lookup = self._in_flight.get(key)
            if lookup is None:
                lookup = self._in_flight[key] = _Lookup(started=self._clock())
                start = True
        if start:
            threading.Thread(target=self._look_up, args=(key, lookup), name="media-dns", daemon=True).start()
        wait = self.timeout if timeout is None else max(0.0, min(timeout, self.timeout))
        if not lookup.done.wait(wait):
            with self._lock:
                # Only a wait of the whole cap marks the name as failing: a caller with little time left of its
                # own fetch says nothing about the name.
                if key in self._in_flight and self._clock() - lookup.started >= self.timeout:
                    self._remember(key, _Entry(self._clock() + self.failure_ttl, failure="timeout"))
            raise DnsFailed("timeout")
        assert lookup.entry is not None  # set before done
        return self._answer(lookup.entry)

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()

    def _answer(self, entry: _Entry) -> tuple[str, ...]:
        if entry.failure:
            raise DnsFailed(entry.failure)
        return entry.answers

    def _look_up(self, key: tuple[str, int], lookup: _Lookup) -> None:
        try:
            answers = tuple(self._resolve(*key))
            entry = _Entry(self._clock() + self.ttl, answers=answers)
        except Exception as exc:  # OSError from getaddrinfo; anything else must not leave waiters hanging either
            entry = _Entry(self._clock() + self.failure_ttl, failure=type(exc).__name__)
        lookup.entry = entry
        with self._lock:
            self._remember(key, entry)
            self._in_flight.pop(key, None)
        lookup.done.set()

    def _remember(self, key: tuple[str, int], entry: _Entry) -> None:
        """Called with the lock held. Past ``max_entries``, expired entries go, then the oldest."""
        self._entries.pop(key, None)
        self._entries[key] = entry
        if len(self._entries) > self.max_entries:
            now = self._clock()
            for old in [k for k, e in self._entries.items() if e.expires <= now]:
                del self._entries[old]
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]


def local_endpoints_parse(values: Iterable[str]) -> frozenset[tuple[IPAddress, int]]:
    """``MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS``: "127.0.0.1:8765" or "[::1]:8765" pairs; a ValueError naming the
    entry for anything else, a name or a non-loopback address above all (the setting is for a benchmark serving
    its own images, never a way into the network)."""
    endpoints = set()
    for value in values:
        value = value.strip()
        if not value:
            continue
        host, sep, port = value.rpartition(":")
        try:
            address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
            number = int(port)
        except ValueError:
            raise ValueError(f"{value!r} is not address:port") from None
        if not sep or not 0 < number < 65536:
            raise ValueError(f"{value!r} is not address:port")
        if not address.is_loopback:
            raise ValueError(f"{value!r}: only loopback addresses may be allowed")
        endpoints.add((address, number))
    return frozenset(endpoints)


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
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MediaRefused("too_slow", f"over {limits.max_seconds:g}s")
        address = policy.check(policy.resolve(host, port, timeout=remaining), port)
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
