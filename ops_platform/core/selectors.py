"""Kernel reads about people: how one person is named to another."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from ops_platform.core.models import User

# Who may see every colleague's name on an item: QA and senior reviewers (they coach and adjudicate across
# teams and vendors), ops managers and admins.
NAMES_VISIBLE_WITH = ("core.perform_qa", "core.view_analytics", "core.manage_platform")

YOU = "you"
ANOTHER_REVIEWER = "another reviewer"
A_SENIOR_REVIEWER = "a senior reviewer"
A_STAFF_MEMBER = "a staff member"


@dataclass(frozen=True)
class Naming:
    label: str
    identified: bool  # False: ``label`` is a role, and what the person wrote may identify them


def person_sees_names(viewer: User) -> bool:
    return any(viewer.has_perm(perm) for perm in NAMES_VISIBLE_WITH)


def _holding(perm: str) -> Q:
    codename = perm.split(".", 1)[1]
    return Q(is_superuser=True) | Q(groups__permissions__codename=codename) | Q(user_permissions__codename=codename)


def people_named_for(*, viewer: User, people: Iterable[int]) -> dict[int, Naming]:
    """How each of ``people`` (user ids) is named to ``viewer``: "you" for themselves; the username to leads
    and QA, and to members of the viewer's own team; outside it, only their role ("another reviewer", "a senior
    reviewer"), so a vendor's reviewers never learn who at another vendor or in-house worked an item."""
    ids = set(people)
    if not ids:
        return {}
    rows = list(User.objects.filter(pk__in=ids).values_list("pk", "username", "reviewer_profile__team_id"))
    if person_sees_names(viewer):
        return {pk: Naming(YOU if pk == viewer.pk else username, True) for pk, username, _ in rows}
    own_team = getattr(getattr(viewer, "reviewer_profile", None), "team_id", None)
    others = {pk for pk, _, team in rows if pk != viewer.pk and (own_team is None or team != own_team)}
    seniors = set(User.objects.filter(pk__in=others).filter(_holding("core.perform_qa")).values_list("pk", flat=True))
    reviewers = set(
        User.objects.filter(pk__in=others - seniors).filter(_holding("core.review_items")).values_list("pk", flat=True)
    )
    named: dict[int, Naming] = {}
    for pk, username, _ in rows:
        if pk == viewer.pk:
            named[pk] = Naming(YOU, True)
        elif pk not in others:
            named[pk] = Naming(username, True)
        elif pk in seniors:
            named[pk] = Naming(A_SENIOR_REVIEWER, False)
        elif pk in reviewers:
            named[pk] = Naming(ANOTHER_REVIEWER, False)
        else:
            named[pk] = Naming(A_STAFF_MEMBER, False)
    return named
