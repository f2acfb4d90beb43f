"""Who may scrape ``/metrics``: the bearer token ``METRICS_TOKEN`` or an address in ``METRICS_ALLOWED_ADDRESSES``.

The figures name queues, sources and backends and show volumes: operational detail, not for the public. With
neither setting the endpoint refuses everyone.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest

from ops_platform.core.client_address import client_address


@dataclass(frozen=True)
class Refusal:
    status: int  # 401: a token would do; 403: nothing would
    detail: str


def _networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        ipaddress.ip_network(entry.strip(), strict=False)
        for entry in settings.METRICS_ALLOWED_ADDRESSES
        if entry.strip()
    ]


def scrape_refusal(request: HttpRequest) -> Refusal | None:
    """None when the request may read the metrics, else why not."""
    token: str = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer "):
        if hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), token.encode()):
            return None
        return Refusal(401, "Wrong metrics token.")
    address = client_address(request)
    if address:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
        if ip is not None and any(ip in network for network in _networks()):
            return None
    if token:
        return Refusal(401, "A metrics token is required (Authorization: Bearer …).")
    if not settings.METRICS_ALLOWED_ADDRESSES:
        return Refusal(403, "Metrics are off: set METRICS_TOKEN or METRICS_ALLOWED_ADDRESSES.")
    return Refusal(403, "This address may not read the metrics.")
