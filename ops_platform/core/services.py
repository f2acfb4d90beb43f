"""Kernel writes: the audit trail, API clients and their keys, people and their roles."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from ops_platform.core.models import ApiClient, ApiKey, AuditLog, ReviewerProfile, Role, Team, User


def actor_label(actor: User | ApiClient | str | None) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, User):
        return f"user:{actor.get_username()}"
    if isinstance(actor, ApiClient):
        return f"api:{actor.source}"
    return actor


def audit_record(
    *,
    actor: User | ApiClient | str | None,
    action: str,
    target: Any,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
) -> AuditLog:
    """Append one audit entry. ``target`` is a model instance or a ``(type, id)`` pair."""
    if isinstance(target, tuple):
        target_type, target_id = target
    else:
        target_type, target_id = target._meta.label_lower, target.pk
    return AuditLog.objects.create(
        actor=actor if isinstance(actor, User) else None,
        actor_label=actor_label(actor),
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        before=before,
        after=after,
        reason=reason,
    )


@transaction.atomic
def api_client_create(
    *,
    actor: User | str | None,
    name: str,
    source: str,
    scopes: list[str],
    callback_url: str = "",
    rate_limit_per_minute: int | None = None,
) -> tuple[ApiClient, str]:
    """Create a client and its first key; the raw key is returned once and never stored.

    A client with a callback URL gets a webhook signing secret (``client.webhook_secret``) to share with it.
    """
    client = ApiClient(
        name=name,
        source=source,
        scopes=scopes,
        callback_url=callback_url,
        webhook_secret=webhook_secret_generate() if callback_url else "",
        rate_limit_per_minute=rate_limit_per_minute,
    )
    client.full_clean()
    client.save()
    key, raw = ApiKey.generate(client)
    key.save()
    audit_record(
        actor=actor,
        action="api_client.create",
        target=client,
        after={"name": name, "source": source, "scopes": scopes, "key": str(key)},
    )
    return client, raw


def webhook_secret_generate() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


@transaction.atomic
def webhook_secret_rotate(*, actor: User | str | None, client: ApiClient) -> str:
    """Give the client a new webhook signing secret, used from the next attempt on; share it with the client."""
    had_secret = bool(client.webhook_secret)
    client.webhook_secret = webhook_secret_generate()
    client.save(update_fields=["webhook_secret"])
    audit_record(
        actor=actor,
        action="webhook_secret.rotate",
        target=client,
        before={"had_secret": had_secret},
        after={"had_secret": True},
    )
    return client.webhook_secret


@transaction.atomic
def api_key_rotate(
    *, actor: User | str | None, client: ApiClient, grace: timedelta = timedelta(hours=24)
) -> tuple[ApiKey, str]:
    """Issue a new key; keys in use now keep working for ``grace`` so the client can switch over."""
    now = timezone.now()
    old = list(client.keys.usable())
    for key in old:
        key.expires_at = min(key.expires_at or now + grace, now + grace)
        key.save(update_fields=["expires_at"])
    new, raw = ApiKey.generate(client)
    new.save()
    audit_record(
        actor=actor,
        action="api_key.rotate",
        target=client,
        before={"usable_keys": [str(k) for k in old]},
        after={"new_key": str(new), "old_keys_expire_at": (now + grace).isoformat()},
    )
    return new, raw


@transaction.atomic
def api_key_issue(*, actor: User | str | None, client: ApiClient) -> tuple[ApiKey, str]:
    """Give a client made without one (in the admin) its first key; the raw key is returned once, never stored."""
    key, raw = ApiKey.generate(client)
    key.save()
    audit_record(actor=actor, action="api_key.issue", target=client, after={"key": str(key)})
    return key, raw


@transaction.atomic
def api_key_revoke(*, actor: User | str | None, key: ApiKey, reason: str) -> None:
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    audit_record(actor=actor, action="api_key.revoke", target=key.client, after={"key": str(key)}, reason=reason)


@transaction.atomic
def user_create(
    *,
    actor: User | str | None,
    username: str,
    password: str,
    roles: list[Role],
    team: Team | None = None,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
) -> User:
    """A person with their roles and, for anyone who reviews, a reviewer profile."""
    user = User.objects.create_user(
        username=username, password=password, email=email, first_name=first_name, last_name=last_name
    )
    user.groups.set(Group.objects.filter(name__in=[str(r) for r in roles]))
    if Role.ADMIN in roles:
        user.is_staff = True
        user.is_superuser = True
        user.save(update_fields=["is_staff", "is_superuser"])
    if {Role.REVIEWER, Role.SENIOR_REVIEWER} & set(roles) or team is not None:
        ReviewerProfile.objects.create(user=user, team=team)
    audit_record(
        actor=actor,
        action="user.create",
        target=user,
        after={
            "username": username,
            "roles": sorted(str(r) for r in roles),
            "team": team.slug if team else None,
        },
    )
    return user
