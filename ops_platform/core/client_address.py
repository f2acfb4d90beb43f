"""The address a request came from, for the throttles (sign-in and invalid API keys): trusting only our own
proxies, never what the client wrote.

Behind the TLS proxy (``BEHIND_TLS_PROXY``) every request arrives from the proxy, so the address is in
``X-Forwarded-For``: each proxy appends the address it saw, so with ``TRUSTED_PROXY_COUNT`` proxies in a row
the client's address is that many entries from the end. Entries before it are whatever the client chose to
send and would let a guesser pick a fresh address for every attempt. Without the proxy setting the header is
ignored entirely: anyone could send it.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """The client's address as our outermost trusted proxy saw it, else the connection's."""
    remote = request.META.get("REMOTE_ADDR")
    if not settings.BEHIND_TLS_PROXY:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    count = settings.TRUSTED_PROXY_COUNT
    if len(hops) < count:
        return remote
    try:
        return str(ipaddress.ip_address(hops[-count]))
    except ValueError:  # not what a proxy of ours writes: the request did not come through them
        return remote
