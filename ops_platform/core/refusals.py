"""How a page refuses: a refused field value answers its 4xx with a page naming the field; a refusal of the
request as a whole (the item was taken meanwhile, the step is not allowed now) goes back with the message.

The field's name is on the page as ``data-field`` so a test (and a person reading the page) can tell which
input was wrong. An ``ApplicationError`` a page view does not catch lands here too (``RefusalMiddleware``):
a refusal is never a 500.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from ops_platform.core.errors import ApplicationError


def _back(request: HttpRequest, back: str | None) -> str:
    if back:
        return back
    referer = request.META.get("HTTP_REFERER", "")
    if referer and url_has_allowed_host_and_scheme(referer, {request.get_host()}, request.is_secure()):
        return referer
    return reverse("home")


def refusal_response(request: HttpRequest, exc: ApplicationError, *, back: str | None = None) -> HttpResponse:
    """The refusal page: the problem, the field it is about, and a way back."""
    return render(
        request,
        "core/refused.html",
        {"message": exc.message, "field": exc.field or "", "back": _back(request, back)},
        status=exc.status_code,
    )


def refused(request: HttpRequest, exc: ApplicationError, *, back: str) -> HttpResponse:
    """A view's answer to a service's refusal: a 4xx naming the field when the refused value is one the request
    sent, otherwise (the item was taken meanwhile, the step is not allowed now) back to ``back`` with the
    message."""
    if exc.field and (exc.field in request.POST or exc.field in request.GET):
        return refusal_response(request, exc, back=back)
    messages.error(request, exc.message)
    return HttpResponseRedirect(back)
