"""Data migrations on rows that exist when they run."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("queues", "0011_item_author_auto_index")]
AFTER = [("queues", "0012_decision_vendor")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("latest_schema_after")
def test_existing_decisions_take_their_reviewers_vendor() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    vendor = apps.get_model("core", "Vendor").objects.create(slug="acme", name="Acme")
    at_vendor = apps.get_model("core", "Team").objects.create(slug="acme-1", vendor=vendor)
    in_house = apps.get_model("core", "Team").objects.create(slug="house")
    User, Profile = apps.get_model("core", "User"), apps.get_model("core", "ReviewerProfile")
    Item, Decision = apps.get_model("queues", "ReviewItem"), apps.get_model("queues", "Decision")
    deciders = {}
    for username, team in (("at-vendor", at_vendor), ("in-house", in_house), ("no-profile", None)):
        user = User.objects.create(username=username)
        if team is not None:
            Profile.objects.create(user=user, team=team)
        item = Item.objects.create(source="s", external_id=username, received_at=timezone.now())
        deciders[username] = Decision.objects.create(
            item=item, reviewer=user, is_violation=False, decided_at=timezone.now()
        ).pk

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)

    Decision = executor.loader.project_state(AFTER).apps.get_model("queues", "Decision")
    vendors = dict(Decision.objects.values_list("pk", "vendor_id"))
    assert vendors == {deciders["at-vendor"]: vendor.pk, deciders["in-house"]: None, deciders["no-profile"]: None}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("latest_schema_after")
def test_items_reserved_before_reservations_ended_get_the_configured_window() -> None:
    before, after = [("queues", "0013_lean_indexes")], [("queues", "0014_item_skips_and_reservation_expiry")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    User, Item = apps.get_model("core", "User"), apps.get_model("queues", "ReviewItem")
    senior = User.objects.create(username="senior")
    reserved = Item.objects.create(source="s", external_id="r", received_at=timezone.now(), reserved_for=senior)
    free = Item.objects.create(source="s", external_id="f", received_at=timezone.now())
    started = timezone.now()

    executor = MigrationExecutor(connection)
    executor.migrate(after)

    Item = executor.loader.project_state(after).apps.get_model("queues", "ReviewItem")
    until = dict(Item.objects.values_list("pk", "reserved_until"))
    assert until[free.pk] is None
    assert (
        started + settings.ESCALATION_RESERVATION
        <= until[reserved.pk]
        <= timezone.now() + settings.ESCALATION_RESERVATION
    )
