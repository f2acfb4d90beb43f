"""Kernel pages: the signed-in home, a health check for load balancers, and the error pages."""

import logging
import sys
from functools import lru_cache

from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.db import InterfaceError, OperationalError, connection
from django.http import Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.views import defaults
from django.views.decorators.http import require_GET

from ops_platform.core.home import home_notices
from ops_platform.core.middleware import database_unavailable_response

logger = logging.getLogger(__name__)

# Redoc's bundle draws Redocly's logo from their CDN in its sidebar, unconditionally: served with our own icon in
# its place, the API reference makes no request off the machine and breaks no Content-Security-Policy.
REDOC_BUNDLE = "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@lru_cache(maxsize=1)
def _redoc_bundle() -> bytes:
    path = finders.find(REDOC_BUNDLE)
    if not path:
        raise Http404("The Redoc bundle is not installed.")
    with open(path, "rb") as bundle:
        return bundle.read().replace(REDOC_CDN_LOGO.encode(), static("core/favicon.svg").encode())


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico where a page names no icon (the API reference pages): the app's icon."""
    return HttpResponsePermanentRedirect(static("core/favicon.svg"))


@require_GET
def redoc_bundle(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(_redoc_bundle(), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=86400"
    return response


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "core/home.html",
        {"roles": request.user.groups.values_list("name", flat=True), "notices": home_notices(request.user)},
    )


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        unavailable = JsonResponse({"status": "unavailable", "database": "down"}, status=503)
        unavailable["Retry-After"] = "5"
        return unavailable
    return JsonResponse({"status": "ok"})


# Django's own error pages are HTML; an API client (whose URL did not even resolve, e.g. a negative item id)
# gets the API's one error shape instead.
API_PREFIX = "/api/"


def _api_error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail, "errors": [{"problem": detail}]}, status=status)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return _api_error(400, "bad_request", "The request could not be read.")
    return defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return _api_error(404, "not_found", "No such resource.")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``. An unreachable database raised outside a view (a middleware saving a session) is still a
    503 with Retry-After; any other failure is a 500, in the API's JSON error shape under ``/api/``."""
    exc = sys.exc_info()[1]
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable during %s %s: %s", request.method, request.path, type(exc).__name__)
        return database_unavailable_response(request)
    if request.path.startswith(API_PREFIX):
        return _api_error(500, "server_error", "Something went wrong on our side.")
    return defaults.server_error(request)
