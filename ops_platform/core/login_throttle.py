"""Who is signing in, as django-axes counts failures: the client address, trusting only our own proxy."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def login_client_ip(request: HttpRequest) -> str | None:
    """The address the request came from.

    Behind the TLS proxy (``BEHIND_TLS_PROXY``) every request arrives from the proxy, so the address is the
    last one in ``X-Forwarded-For``: the one our proxy appended. Earlier entries are whatever the client
    chose to send and would let a guesser pick a fresh address for every attempt.
    """
    if settings.BEHIND_TLS_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.META.get("REMOTE_ADDR")
