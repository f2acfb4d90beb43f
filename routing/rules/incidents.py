"""Rule incidents: a rule that failed while routing is skipped for those items and recorded here, one open
incident per rule with a count, for policy staff (``/rules/``) and ops (the scoring page) to act on."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ops_platform.core.errors import Conflict, NotPermitted
from ops_platform.core.models import User
from ops_platform.core.services import audit_record
from routing.rules.engine import RuleFailure
from routing.rules.models import RuleIncident

logger = logging.getLogger(__name__)


def rule_incidents_record(failures: Iterable[RuleFailure], *, at: datetime | None = None) -> int:
    """Count each failure into its rule's open incident, opening one where there is none; return how many rules.

    Programs built from text alone (no stored rule) are only logged.
    """
    now = at or timezone.now()
    recorded = 0
    for failure in failures:
        logger.error(
            "rule %r of rule set %s v%s failed on %d items and was skipped: %s",
            failure.rule.name,
            failure.rule_set_id,
            failure.version,
            failure.rows,
            failure.error.split(":", 1)[0],
        )
        if failure.rule.pk is None or failure.rule_set_id is None or not failure.rows:
            continue
        recorded += 1
        open_incident = RuleIncident.objects.filter(rule_id=failure.rule.pk, resolved_at__isnull=True)
        if open_incident.update(items=F("items") + failure.rows, last_seen_at=now, error=failure.error):
            continue
        try:
            with transaction.atomic():
                RuleIncident.objects.create(
                    rule_set_id=failure.rule_set_id,
                    rule_id=failure.rule.pk,
                    error=failure.error,
                    items=failure.rows,
                    first_seen_at=now,
                    last_seen_at=now,
                )
        except IntegrityError:  # another worker opened it first
            open_incident.update(items=F("items") + failure.rows, last_seen_at=now, error=failure.error)
    return recorded


@transaction.atomic
def rule_incident_resolve(*, actor: User, incident: RuleIncident, note: str = "") -> RuleIncident:
    """Close an incident once the rule is fixed in a new version (or its version retired); a later failure of
    the same rule opens a new one."""
    if not (actor.has_perm("core.edit_rules") or actor.has_perm("core.approve_rules")):
        raise NotPermitted("Only policy staff may resolve rule incidents.")
    incident = RuleIncident.objects.select_for_update().get(pk=incident.pk)
    if incident.resolved_at is not None:
        raise Conflict("This incident is already resolved.")
    incident.resolved_at, incident.resolved_by = timezone.now(), actor
    incident.save(update_fields=["resolved_at", "resolved_by"])
    audit_record(
        actor=actor,
        action="rule_incident.resolve",
        target=incident,
        before={"open": True, "rule": incident.rule_id, "items": incident.items},
        after={"open": False},
        reason=note,
    )
    return incident
