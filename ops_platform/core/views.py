"""Kernel pages: the signed-in home and a health check for load balancers."""

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
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
