"""The sign-in page and single sign-on's two steps: off to the provider, and back (docs/sso.md)."""

from __future__ import annotations

import logging
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth.views import LoginView
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from ops_platform.core.sso import SsoTokenInvalid

logger = logging.getLogger(__name__)

UNVERIFIED_ANSWER = (
    "The identity provider's answer could not be verified, so you are not signed in. Sign in again; "
    "if this happens again, tell an admin (the refusal is in the audit log)."
)
STATE_UNKNOWN = (
    "This sign-in was not started from this browser (or it was already used), so you are not signed in. "
    "Start again from the sign-in page."
)


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
    """Back from the provider: a state this session did not start, or an ID token that does not verify, is a
    400 page saying so; a person the platform refuses sees why (403); a provider that does not answer is a 502."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not settings.OIDC_ENABLED:
            raise Http404("Single sign-on is not set up here.")
        try:
            return super().dispatch(request, *args, **kwargs)
        except requests.RequestException as exc:
            logger.warning("sso: the identity provider failed: %s", type(exc).__name__)
            return _refused(request, "The identity provider did not answer properly; try again later.", 502)
        except SsoTokenInvalid:  # audited by sso_token_reject
            return _refused(request, UNVERIFIED_ANSWER, 400)
        except SuspiciousOperation:  # the library's state check: a callback this browser session did not start
            logger.warning("sso: a callback with a state this session did not start")
            return _refused(request, STATE_UNKNOWN, 400)

    def login_failure(self) -> HttpResponse:
        reason = getattr(self.request, "sso_refusal", None)
        if reason:
            return _refused(self.request, reason, 403)
        if self.request.GET.get("error"):
            return _refused(self.request, "The identity provider did not sign you in.", 403)
        return super().login_failure()


def _refused(request: HttpRequest, reason: str, status: int) -> HttpResponse:
    return render(request, "registration/sso_refused.html", {"reason": reason}, status=status)
