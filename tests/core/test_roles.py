"""Roles are groups with exactly the permissions the role table gives them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from ops_platform.core.models import Role
from ops_platform.core.roles import ROLE_PERMISSIONS

pytestmark = pytest.mark.django_db


def test_every_role_exists_as_a_group_with_its_permissions():
    for role in Role:
        group = Group.objects.get(name=role.value)
        codenames = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert codenames == set(ROLE_PERMISSIONS[role])


def test_people_get_what_their_role_allows_and_nothing_more(
    reviewer, vendor_reviewer, qa_lead, policy_staff, ops_manager, outsider
):
    assert reviewer.has_perm("core.review_items")
    assert vendor_reviewer.has_perm("core.review_items")
    assert not reviewer.has_perm("core.perform_qa")
    assert qa_lead.has_perm("core.perform_qa")
    assert qa_lead.has_perm("core.bulk_decide")
    assert policy_staff.has_perm("core.approve_rules")
    assert not policy_staff.has_perm("core.review_items")
    assert ops_manager.has_perm("core.view_analytics")
    assert not ops_manager.has_perm("core.edit_rules")
    assert not any(outsider.has_perm(p) for perms in ROLE_PERMISSIONS.values() for p in perms)
    assert reviewer.reviewer_profile.team.is_in_house
    assert vendor_reviewer.reviewer_profile.vendor.slug == "vendor-a"
