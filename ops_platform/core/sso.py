"""Single sign-on with OpenID Connect (mozilla-django-oidc), and local passwords that can be switched off.

The provider's groups are the source of truth for roles: a person is created on their first sign-in and their
roles (and vendor team) are set again from their groups on every sign-in, so a group the provider removes takes
its role away at the next sign-in. A person none of whose groups maps to a role is refused, and keeps no role.
People are matched on the provider's issuer and subject (``SsoIdentity``), never on an email address.
Configuration: the OIDC_* settings (ops_platform/settings.py, docs/sso.md).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

import jwt
from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from ops_platform.core.models import ReviewerProfile, Role, SsoIdentity, Team, User
from ops_platform.core.services import audit_record

logger = logging.getLogger(__name__)

REVIEWING_ROLES = {Role.REVIEWER, Role.SENIOR_REVIEWER}
_USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")


class SsoRefused(Exception):
    """The provider vouched for the person, but the platform does not let them in (the reason says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SsoClaims:
    """What the platform takes from the provider's verified ID token and userinfo answer."""

    issuer: str
    subject: str
    preferred_username: str = ""
    email: str = ""
    given_name: str = ""
    family_name: str = ""
    groups: list[str] = field(default_factory=list)


def role_groups() -> dict[str, Role]:
    """OIDC_ROLE_GROUPS checked: every value must name a role."""
    mapping: dict[str, Role] = {}
    for group, role in settings.OIDC_ROLE_GROUPS.items():
        if role not in Role.values:
            raise ImproperlyConfigured(
                f"OIDC_ROLE_GROUPS maps {group!r} to {role!r}, which is not a role (one of {', '.join(Role.values)})."
            )
        mapping[group] = Role(role)
    return mapping


def roles_for(groups: list[str]) -> list[Role]:
    mapping = role_groups()
    return sorted({mapping[g] for g in groups if g in mapping})


def team_for(groups: list[str]) -> Team | None:
    """The team the groups name (OIDC_TEAM_GROUPS), or None; two different teams are a refusal."""
    slugs = sorted({settings.OIDC_TEAM_GROUPS[g] for g in groups if g in settings.OIDC_TEAM_GROUPS})
    if not slugs:
        return None
    if len(slugs) > 1:
        raise SsoRefused(f"Your groups place you on more than one team ({', '.join(slugs)}); a person is on one.")
    team = Team.objects.filter(slug=slugs[0]).first()
    if team is None:
        raise SsoRefused(f"Your team {slugs[0]!r} does not exist on this platform yet; ask an admin to create it.")
    return team


def _username_for(claims: SsoClaims) -> str:
    """A free username from the provider's preferred username (or the email's local part); never an existing
    person's: a local account of the same name stays that person's, and the newcomer is ``name-2``."""
    wanted = claims.preferred_username or claims.email.split("@")[0] or "sso-user"
    base = _USERNAME_UNSAFE.sub("-", wanted)[:140] or "sso-user"
    candidate, n = base, 1
    while User.objects.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _state(user: User) -> dict[str, Any]:
    profile = ReviewerProfile.objects.filter(user=user).select_related("team").first()
    return {
        "roles": user.roles,
        "team": profile.team.slug if profile and profile.team else None,
        "is_staff": user.is_staff,
    }


def _sync(user: User, roles: list[Role], team: Team | None) -> None:
    """Give the person exactly these roles; put them on the team, or take them off a team the provider's
    groups no longer name (a team assigned by hand, outside OIDC_TEAM_GROUPS, stays)."""
    user.groups.set(Group.objects.filter(name__in=[str(r) for r in roles]))
    is_admin = Role.ADMIN in roles
    if user.is_staff != is_admin or user.is_superuser != is_admin:
        user.is_staff = user.is_superuser = is_admin
        user.save(update_fields=["is_staff", "is_superuser"])
    profile = ReviewerProfile.objects.filter(user=user).select_related("team").first()
    mapped_teams = set(settings.OIDC_TEAM_GROUPS.values())
    if profile is None:
        if REVIEWING_ROLES & set(roles) or team is not None:
            ReviewerProfile.objects.create(user=user, team=team)
        return
    if team is not None and profile.team_id != team.pk:
        profile.team = team
        profile.save(update_fields=["team"])
    elif team is None and profile.team is not None and profile.team.slug in mapped_teams:
        profile.team = None
        profile.save(update_fields=["team"])


def sso_sign_in(claims: SsoClaims) -> User:
    """The person the provider vouched for, created on their first sign-in, roles and team re-synced from their
    groups; every sign-in and refusal is audited. Raises SsoRefused (after recording it)."""
    refusal: SsoRefused | None = None
    with transaction.atomic():
        identity = (
            SsoIdentity.objects.select_for_update()
            .select_related("user")
            .filter(issuer=claims.issuer, subject=claims.subject)
            .first()
        )
        user = identity.user if identity else None
        roles = roles_for(claims.groups)
        try:
            if user is not None and not user.is_active:
                raise SsoRefused("Your account here is switched off; ask an admin.")
            team = team_for(claims.groups)
            if not roles:
                raise SsoRefused(
                    "None of your groups at the identity provider gives a role on this platform; "
                    "ask your manager for access."
                )
        except SsoRefused as exc:
            refusal = exc
            team = None
            roles = []
        if user is None and refusal is None:
            user = User.objects.create_user(
                username=_username_for(claims),
                email=claims.email,
                first_name=claims.given_name[:150],
                last_name=claims.family_name[:150],
            )  # no usable password: this person signs in with the provider only
            identity = SsoIdentity.objects.create(user=user, issuer=claims.issuer, subject=claims.subject)
            _sync(user, roles, team)
            audit_record(
                actor=user,
                action="user.create",
                target=user,
                after={**_state(user), "username": user.get_username(), "via": "sso"},
            )
        elif user is not None and (refusal is None or user.is_active):
            before = _state(user)
            _sync(user, roles, team)
            after = _state(user)
            if before != after:
                audit_record(actor="sso", action="user.roles_sync", target=user, before=before, after=after)
        if refusal is None:
            assert user is not None
            assert identity is not None
            changed = {
                "email": claims.email,
                "first_name": claims.given_name[:150],
                "last_name": claims.family_name[:150],
            }
            if any(getattr(user, k) != v for k, v in changed.items()):
                User.objects.filter(pk=user.pk).update(**changed)
            identity.last_sign_in_at = timezone.now()
            identity.save(update_fields=["last_sign_in_at"])
            audit_record(actor=user, action="user.sign_in", target=user, after={"method": "sso", "roles": user.roles})
            return user
    target: Any = user if user is not None else ("sso_identity", claims.subject[:100])
    audit_record(
        actor=user or "sso",
        action="user.sign_in_refused",
        target=target,
        after={"method": "sso", "groups": len(claims.groups)},
        reason=refusal.reason,
    )
    logger.info("sso sign-in refused for %s", f"user {user.pk}" if user else "a person unknown here")
    raise refusal


class SsoTokenInvalid(Exception):
    """The provider's answer did not verify: the callback shows the error page (400), never a signed-in session.
    Not a SuspiciousOperation, which the library swallows in places (a login failure with no reason given)."""


def sso_token_reject(reason: str) -> NoReturn:
    """Audit a callback whose ID token (or userinfo answer) did not verify, then refuse it. ``reason`` is the
    platform's own text: nothing of the token is recorded, since whoever sent it is not known."""
    audit_record(
        actor="sso", action="user.sign_in_refused", target=("sso_identity", ""), after={"method": "sso"}, reason=reason
    )
    logger.warning("sso: %s", reason)
    raise SsoTokenInvalid(reason)


class SsoBackend(OIDCAuthenticationBackend):
    """The authorization-code flow's end: the library exchanges the code, checks the ID token's signature
    (the provider's JWKS) and nonce; this also checks its issuer and audience, then ``sso_sign_in``."""

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> User | None:
        # Only the callback, only while single sign-on is on; a password never reaches the provider.
        if not settings.OIDC_ENABLED or request is None or "password" in kwargs:
            return None
        if request.path != reverse(settings.OIDC_AUTHENTICATION_CALLBACK_URL):
            return None
        user: User | None = super().authenticate(request, **kwargs)
        return user

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = super().verify_token(token, **kwargs)
        except (SuspiciousOperation, jwt.PyJWTError, KeyError) as exc:
            # A forged or altered token, one signed with another key, a replayed nonce, or no token at all; the
            # library's message may quote the token's header, so the audit names the error type only.
            sso_token_reject(f"The ID token did not verify ({type(exc).__name__}).")
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if settings.OIDC_RP_CLIENT_ID not in audiences:
            sso_token_reject("The ID token was issued to another client.")
        if payload.get("iss") != settings.OIDC_OP_ISSUER:
            sso_token_reject("The ID token comes from another issuer.")
        return payload

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> User | None:
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload.get("sub"):
            sso_token_reject("The userinfo answer is about someone else than the ID token.")
        groups = userinfo.get(settings.OIDC_GROUPS_CLAIM, payload.get(settings.OIDC_GROUPS_CLAIM, []))
        if not isinstance(groups, list):
            groups = []

        def text(name: str) -> str:
            value = userinfo.get(name, payload.get(name, ""))
            return value if isinstance(value, str) else ""

        claims = SsoClaims(
            issuer=str(payload["iss"]),
            subject=str(payload["sub"]),
            preferred_username=text("preferred_username"),
            email=text("email"),
            given_name=text("given_name"),
            family_name=text("family_name"),
            groups=[g for g in groups if isinstance(g, str)],
        )
        try:
            return sso_sign_in(claims)
        except SsoRefused as exc:
            self.request.sso_refusal = exc.reason  # the callback view shows it
            return None


PASSWORDS_OFF = "Password sign-in is switched off here."
NOT_BREAK_GLASS = "Only a superuser may sign in with a break-glass password."


def password_sign_in_audit(
    request: HttpRequest | None, *, username: str, user: Any, method: str, refusal: str = ""
) -> None:
    """Audit a password sign-in as ``sso_sign_in`` audits single sign-on: ``user.sign_in`` on success,
    ``user.sign_in_refused`` with the reason otherwise. Only sign-ins made through a page (with a request):
    ``Client.login`` and scripts authenticate without one. A name that matches nobody is not recorded: it is
    often the password typed into the wrong field (django-axes keeps the attempt for throttling)."""
    if request is None:
        return
    if isinstance(user, User) and not refusal:
        audit_record(actor=user, action="user.sign_in", target=user, after={"method": method, "roles": user.roles})
        return
    person = User.objects.filter(username=username).first()
    if not refusal:
        if person is None:
            refusal = "No account has this username."
        elif not person.is_active:
            refusal = "The account is switched off."
        else:
            refusal = "Wrong password."
    audit_record(
        actor="anonymous",  # whoever typed the password: not known to be the account's owner
        action="user.sign_in_refused",
        target=person if person is not None else ("core.user", ""),
        after={"method": method},
        reason=refusal,
    )


def break_glass_allowed(request: HttpRequest | None, username: str | None) -> bool:
    return (
        request is not None
        and username is not None
        and username in settings.LOCAL_PASSWORDS_BREAK_GLASS
        and request.path == reverse("admin:login")
    )


class PasswordBackend(ModelBackend):
    """Local passwords, unless LOCAL_PASSWORDS is off: then only a break-glass superuser, on the admin's
    sign-in page (django-axes, first in AUTHENTICATION_BACKENDS, throttles it like any password)."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> User | None:
        if username is None or password is None:
            return None  # not a password sign-in (the single sign-on callback asks every backend)
        if not settings.LOCAL_PASSWORDS and not break_glass_allowed(request, username):
            password_sign_in_audit(request, username=username, user=None, method="password", refusal=PASSWORDS_OFF)
            return None
        method = "password" if settings.LOCAL_PASSWORDS else "break_glass"
        user = super().authenticate(request, username, password, **kwargs)
        if method == "break_glass" and isinstance(user, User) and not user.is_superuser:
            password_sign_in_audit(request, username=username, user=None, method=method, refusal=NOT_BREAK_GLASS)
            return None
        password_sign_in_audit(request, username=username, user=user, method=method)
        if isinstance(user, User) and method == "break_glass":
            logger.warning("break-glass password sign-in by user %s", user.pk)
        return user if isinstance(user, User) else None

    def get_user(self, user_id: int) -> User | None:
        """Sessions signed in with a password end once passwords are switched off (break-glass ones excepted)."""
        user = super().get_user(user_id)
        if not isinstance(user, User):
            return None
        if settings.LOCAL_PASSWORDS:
            return user
        if user.get_username() in settings.LOCAL_PASSWORDS_BREAK_GLASS and user.is_superuser:
            return user
        return None


def sign_in_options(request: HttpRequest) -> dict[str, Any]:
    """Template context: which ways to sign in the sign-in pages offer."""
    return {
        "sso_enabled": settings.OIDC_ENABLED,
        "local_passwords": settings.LOCAL_PASSWORDS,
        "break_glass": bool(settings.LOCAL_PASSWORDS_BREAK_GLASS),
    }
