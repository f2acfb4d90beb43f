"""Data migrations of routing on rows that exist when they run."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("routing", "0005_lean_indexes"), ("core", "0005_alert_and_metrics_scopes")]
AFTER = [("routing", "0007_ruleset_editors")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("latest_schema_after")
def test_existing_versions_learn_who_wrote_them_from_their_stamps_and_the_audit_log() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    User, RuleSet, Rule = (apps.get_model(*m) for m in (("core", "User"), ("routing", "RuleSet"), ("routing", "Rule")))
    AuditLog = apps.get_model("core", "AuditLog")
    pat, priya, ada = (User.objects.create(username=name) for name in ("pat", "priya", "ada"))
    now = timezone.now()
    version = RuleSet.objects.create(
        kind="intake", version=1, title="t", status="submitted", created_by=pat, submitted_by=ada, submitted_at=now
    )
    rule = Rule.objects.create(rule_set=version, position=1, name="r", condition="true", action="route")
    AuditLog.objects.create(
        actor=priya, actor_label="user:priya", action="rule.save", target_type="routing.rule", target_id=str(rule.pk)
    )
    AuditLog.objects.create(
        actor=pat, actor_label="user:pat", action="rule.delete", target_type="routing.rule", target_id="gone"
    )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    Editor = executor.loader.project_state(AFTER).apps.get_model("routing", "RuleSetEditor")
    editors = {(e.user.username, tuple(e.acts)) for e in Editor.objects.filter(rule_set_id=version.pk)}
    assert editors == {("pat", ("ruleset.draft",)), ("ada", ("ruleset.submit",)), ("priya", ("rule.save",))}
