"""The sign-in page and single sign-on's two steps: off to the provider, and back (docs/sso.md)."""

from __future__ import annotations

import logging
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

logger = logging.getLogger(__name__)


class SignInView(LoginView):
    """Username and password, single sign-on, or both; with local passwords off a password post is refused."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.LOCAL_PASSWORDS:
            context = {**self.get_context_data(), "refusal": "Password sign-in is switched off here."}
            return render(request, "registration/login.html", context, status=403)
        return super().post(request, *args, **kwargs)


class SsoStartView(OIDCAuthenticationRequestView):
    """Off to the provider, with a fresh state, nonce and PKCE verifier kept in the session."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not settings.OIDC_ENABLED:
            raise Http404("Single sign-on is not set up here.")
        return super().dispatch(request, *args, **kwargs)


class SsoCallbackView(OIDCAuthenticationCallbackView):
    """Back from the provider: a state this session did not start is a 400 (the library's check); a person the
    platform refuses sees why (403); a provider that does not answer is a 502."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not settings.OIDC_ENABLED:
            raise Http404("Single sign-on is not set up here.")
        try:
            return super().dispatch(request, *args, **kwargs)
        except requests.RequestException as exc:
            logger.warning("sso: the identity provider failed: %s", type(exc).__name__)
            return _refused(request, "The identity provider did not answer properly; try again later.", 502)

    def login_failure(self) -> HttpResponse:
        reason = getattr(self.request, "sso_refusal", None)
        if reason:
            return _refused(self.request, reason, 403)
        if self.request.GET.get("error"):
            return _refused(self.request, "The identity provider did not sign you in.", 403)
        return super().login_failure()


def _refused(request: HttpRequest, reason: str, status: int) -> HttpResponse:
    return render(request, "registration/sso_refused.html", {"reason": reason}, status=status)
