"""API authentication by client key, scope checks and per-client rate limits (DRF plumbing)."""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework.request import Request

from ops_platform.core.client_address import client_address
from ops_platform.core.models import ApiClient, ApiKey

logger = logging.getLogger(__name__)

# Writing last_used_at on every call would add a write to every request; once a minute is enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer tsk_<lookup>_<secret>``: the lookup finds the key, the digest proves it."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        address = client_address(request._request)
        key_failures_check(address)
        scheme, _, raw_key = header.partition(" ")
        if scheme != self.keyword or not raw_key.strip():
            key_failure_note(address)
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <API key>'.")
        raw_key = raw_key.strip()
        lookup = ApiKey.split(raw_key)
        key = ApiKey.objects.usable().select_related("client").filter(lookup=lookup).first() if lookup else None
        if key is None or not key.matches(raw_key) or not key.client.is_active:
            key_failure_note(address)
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return key.client, key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


def _failures_key(address: str | None) -> str:
    return f"api-key-failures:{address or 'unknown'}"


def key_failures_check(address: str | None) -> None:
    """429 for an address that sent ``API_KEY_FAILURE_LIMIT`` invalid keys this window: checked before the
    key is looked up, so a guesser costs us one cache read per try, not a database query and a hash."""
    key = _failures_key(address)
    try:
        found = cache.get_many([key, f"{key}:since"])
    except (redis.ConnectionError, redis.TimeoutError) as exc:  # like the rate limit, fail open
        logger.warning("invalid key throttle not checked, cache unreachable (%s)", type(exc).__name__)
        return
    if found.get(key, 0) < settings.API_KEY_FAILURE_LIMIT:
        return
    elapsed = time.time() - found.get(f"{key}:since", time.time())
    wait = max(1, math.ceil(settings.API_KEY_FAILURE_WINDOW_SECONDS - elapsed))
    raise exceptions.Throttled(wait=wait, detail="Too many invalid API keys from this address; retry later.")


def key_failure_note(address: str | None) -> None:
    """Count one invalid key against the address, in a window that starts at its first failure."""
    key, window = _failures_key(address), settings.API_KEY_FAILURE_WINDOW_SECONDS
    try:
        cache.add(f"{key}:since", time.time(), window)
        if not cache.add(key, 1, window):
            cache.incr(key)
    except ValueError:  # the window ended between add and incr: this failure starts the next one
        cache.add(key, 1, window)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("invalid key not counted, cache unreachable (%s)", type(exc).__name__)


class HasScope(permissions.BasePermission):
    """Views name the scope each method needs in ``required_scopes``; no entry means no access."""

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.user
        if not isinstance(client, ApiClient):
            return False
        needed = getattr(view, "required_scopes", {}).get(request.method)
        if needed is None or not client.has_scope(needed):
            self.message = f"This API key lacks the '{needed}' scope." if needed else "Method not allowed."
            return False
        return True


class ApiClientRateThrottle(throttling.SimpleRateThrottle):
    """Requests per minute per client, shared across processes through the cache (Redis in production)."""

    scope = "api_client"

    def get_rate(self) -> str:
        return f"{settings.API_DEFAULT_RATE_PER_MINUTE}/min"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        client = request.user
        return f"throttle:api_client:{client.pk}" if isinstance(client, ApiClient) else None

    def allow_request(self, request: Request, view: Any) -> bool:
        client = request.user
        if isinstance(client, ApiClient) and client.rate_limit_per_minute:
            self.num_requests = client.rate_limit_per_minute
        try:
            return super().allow_request(request, view)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # The limit is a fairness guard: a cache outage (Redis restarting) must not become an intake
            # outage, so it fails open until the cache is back (tests/drills/redis_outage.py).
            logger.warning("rate limit not checked, cache unreachable (%s)", type(exc).__name__)
            return True


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Tells drf-spectacular how API keys are presented, for the OpenAPI schema."""

    target_class = "ops_platform.core.api_auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "tsk_<lookup>_<secret>"}
