"""Kernel middleware: an unreachable database answers 503, a refusal its 4xx, and nothing a signed-in person
or an API key gets is cached.

The database being unreachable (a restart, a failover) answers 503 with Retry-After, never 500. The API's own
views get that from DRF's exception handler (``api_errors.api_exception_handler``); this middleware covers every
other view (pages, the admin, anything under ``/api/`` outside DRF), and ``core.views.server_error`` (``handler500``)
covers what is raised outside a view (another middleware loading or saving a session). A page gets a plain page
that names nothing internal; the API gets the API's JSON error body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers

from ops_platform.core.errors import ApplicationError
from ops_platform.core.refusals import refusal_response

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
UNAVAILABLE_DETAIL = "The service is temporarily unavailable; retry shortly."
# Static on purpose: rendering a template would run context processors, which may query the database.
UNAVAILABLE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Temporarily unavailable</title></head>
<body><h1>Temporarily unavailable</h1><p>The service is temporarily unavailable. Please retry in a few seconds.</p>
</body></html>
"""


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"error": "unavailable", "detail": UNAVAILABLE_DETAIL, "errors": []}, status=503)
    else:
        response = HttpResponse(UNAVAILABLE_PAGE, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """A view that fails because the database is unreachable answers 503 instead of 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable during %s %s: %s", request.method, request.path, type(exception).__name__)
        return database_unavailable_response(request)


class RefusalMiddleware:
    """An ``ApplicationError`` a page view lets through (a junk id refused at the boundary by
    ``ops_platform.core.params``) is the refusal page with its 4xx, never a 500. The API answers its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, ApplicationError) or request.path.startswith("/api/"):
            return None
        return refusal_response(request, exception)


class NoStoreMiddleware:
    """``Cache-Control: no-store`` (and the rest of "never cache") on everything a signed-in person or an API
    key gets: item content, dashboards and CSV exports must not stay in a shared machine's browser cache or a
    proxy's. Static files (served by WhiteNoise before this runs) and anonymous pages keep their caching."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Read after the view: a sign-in has just set the user, and DRF replaces it (by an API key's client, or
        # by None on an API URL a browser session opened), so the session cookie counts too.
        user = getattr(request, "user", None)
        if (
            (user is not None and user.is_authenticated)
            or "HTTP_AUTHORIZATION" in request.META
            or settings.SESSION_COOKIE_NAME in request.COOKIES
        ):
            add_never_cache_headers(response)
        return response
