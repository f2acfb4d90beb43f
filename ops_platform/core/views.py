"""Kernel pages: the signed-in home, a health check for load balancers, and the error pages."""

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.http import require_GET


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "core/home.html", {"roles": request.user.groups.values_list("name", flat=True)})


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
    if request.path.startswith(API_PREFIX):
        return _api_error(500, "server_error", "Something went wrong on our side.")
    return defaults.server_error(request)
