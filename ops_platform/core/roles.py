"""Roles as Django groups, each with the permissions its people need (and no more)."""

from typing import Any

from django.contrib.auth.models import Group, Permission

from ops_platform.core.models import Role

ROLE_PERMISSIONS: dict[str, list[str]] = {
    Role.REVIEWER: ["core.review_items"],
    Role.SENIOR_REVIEWER: ["core.review_items", "core.bulk_decide", "core.perform_qa", "core.act_on_accounts"],
    Role.POLICY_STAFF: ["core.edit_rules", "core.approve_rules", "core.edit_policies", "core.act_on_accounts"],
    Role.OPS_MANAGER: ["core.view_analytics", "core.manage_wellness"],
    Role.ADMIN: [
        "core.manage_platform",
        "core.view_analytics",
        "core.edit_rules",
        "core.approve_rules",
        "core.edit_policies",
        "core.manage_wellness",
        "core.act_on_accounts",
    ],
}


def roles_sync() -> None:
    """Create the role groups and set exactly the permissions ROLE_PERMISSIONS gives them."""
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=str(role))
        wanted = []
        for dotted in perms:
            app_label, codename = dotted.split(".")
            wanted.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        group.permissions.set(wanted)


def roles_sync_after_migrate(**kwargs: Any) -> None:
    roles_sync()
