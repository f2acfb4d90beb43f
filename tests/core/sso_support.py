"""Shared by the single sign-on tests: the real provider (a separate process) and the platform's settings for it."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from ops_platform.core.models import Team, Vendor
from tests.conftest import require
from tests.settings import PRODUCTION_AUTHENTICATION_BACKENDS
from tests.support.oidc_provider.server import OidcProvider

CLIENT_ID = "ops-platform"
CLIENT_SECRET = "provider-issued-secret-for-tests"
PROVIDER_PASSWORD = "provider-side-password"
ROLE_GROUPS = {
    "ops-reviewers": "reviewer",
    "ops-qa": "senior_reviewer",
    "ops-policy": "policy_staff",
    "ops-admins": "admin",
}
TEAM_GROUPS = {"vendor-a-reviewers": "vendor-a-team", "vendor-b-reviewers": "vendor-b-team"}


@pytest.fixture(scope="session")
def oidc_provider(live_server) -> Iterator[OidcProvider]:
    require(importlib.util.find_spec("oauth2_provider") is not None, "django-oauth-toolkit (the test OIDC provider)")
    provider = OidcProvider()
    provider.start()
    try:
        provider.seed(
            {
                "client": {
                    "id": CLIENT_ID,
                    "secret": CLIENT_SECRET,
                    "redirect_uri": f"{live_server.url}/accounts/sso/callback",
                }
            }
        )
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def sso_on(settings, oidc_provider: OidcProvider) -> OidcProvider:
    """The platform configured for the provider, as OIDC_* environment settings would; its vendor teams."""
    for name, value in oidc_provider.endpoints().items():
        setattr(settings, name, value)
    settings.OIDC_ENABLED = True
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.OIDC_ROLE_GROUPS = ROLE_GROUPS
    settings.OIDC_TEAM_GROUPS = TEAM_GROUPS
    settings.AUTHENTICATION_BACKENDS = PRODUCTION_AUTHENTICATION_BACKENDS
    # The live server speaks plain http: httpx, unlike a browser on localhost, keeps Secure cookies for https.
    settings.SESSION_COOKIE_SECURE = False
    vendor_a = Vendor.objects.create(slug="vendor-a", name="Vendor A")
    Team.objects.create(slug="vendor-a-team", name="A team", vendor=vendor_a)
    return oidc_provider


def provider_person(provider: OidcProvider, username: str, groups: list[str]) -> None:
    provider.seed(
        {
            "people": [
                {"username": username, "password": PROVIDER_PASSWORD, "email": f"{username}@idp.test", "groups": groups}
            ]
        }
    )


def provider_sign_in(client: httpx.Client, login_page: httpx.Response, username: str) -> httpx.Response:
    """Fill the provider's sign-in form (it sends the browser on with redirects that ``client`` follows)."""
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)
    nxt = re.search(r'name="next" value="([^"]*)"', login_page.text)
    assert csrf is not None, login_page.text[:500]
    assert nxt is not None, login_page.text[:500]
    return client.post(
        str(login_page.url),
        data={
            "csrfmiddlewaretoken": csrf.group(1),
            "username": username,
            "password": PROVIDER_PASSWORD,
            "next": nxt.group(1).replace("&amp;", "&"),
        },
    )


def sso_flow(base: str, username: str, client: httpx.Client | None = None) -> tuple[httpx.Client, httpx.Response]:
    """The whole authorization-code flow as a browser does it: the platform's start page, the provider's sign-in,
    its authorize endpoint, back to the platform's callback (which calls the token, JWKS and userinfo endpoints)."""
    client = client or httpx.Client(follow_redirects=True, timeout=30)
    login_page = client.get(f"{base}/accounts/sso/start")
    assert login_page.status_code == 200, login_page.text[:500]
    assert "Test identity provider" in login_page.text, login_page.text[:500]
    return client, provider_sign_in(client, login_page, username)


class TamperingTokenEndpoint:
    """A man in the middle of the token call: passes the platform's request to the provider's real token endpoint
    and hands back its answer with the ID token changed by ``tamper`` (the provider's signature left as it was)."""

    def __init__(self, upstream: str, tamper: Callable[[str], str]) -> None:
        def relay(handler: BaseHTTPRequestHandler) -> None:
            body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
            headers = {k: v for k, v in handler.headers.items() if k.lower() in ("content-type", "authorization")}
            answer = httpx.post(upstream, content=body, headers=headers, timeout=30).json()
            answer["id_token"] = tamper(answer["id_token"])
            out = json.dumps(answer).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(out)))
            handler.end_headers()
            handler.wfile.write(out)

        handler = type("Relay", (BaseHTTPRequestHandler,), {"do_POST": relay, "log_message": lambda *a: None})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/o/token/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_swapped(token: str, **claims: str) -> str:
    """The same signed token with some claims replaced: what an attacker who cannot sign would send."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return ".".join([header, _b64(json.dumps({**decoded, **claims}).encode()), signature])
