"""What scoring puts on the ops home: the standing child-safety coverage incident, while it stands."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.urls import reverse

from ops_platform.core.home import HomeNotice
from ops_platform.core.models import User
from routing.scoring.coverage import child_safety_gap

OPS = ("core.view_analytics", "core.manage_platform")


def coverage_notices(user: User | AnonymousUser) -> list[HomeNotice]:
    if not any(user.has_perm(perm) for perm in OPS):
        return []
    gap = child_safety_gap()
    if not gap:
        return []
    return [
        HomeNotice(
            "Standing incident: child-safety guard has no score",
            gap,
            url=reverse("scoring-overview"),
            link_text="Classifier scoring",
        )
    ]
