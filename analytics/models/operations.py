"""Operations rollups: daily, mergeable rows (any period or slice is a SUM over them), backlog snapshots and the
refresh cursor. ``analytics.rollups.operations`` writes them; ``analytics.selectors`` reads only these.

Days are local dates (settings.TIME_ZONE). Golden items are left out of every figure. Histograms are sparse
``{bucket: count}`` JSON on the log scale of ``analytics.rollups.histograms`` (ratio 1.02, 1 s to 60 days).

Foreign keys carry no database constraint: rollups are derived data, rebuilt from raw rows, and the
per-day delete-and-insert should not pay for checking every key.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from ops_platform.core.models import Policy, Vendor
from queues.models import Queue

__all__ = [
    "OpsAppealDaily",
    "OpsBacklogSnapshot",
    "OpsDecisionDaily",
    "OpsIntakeDaily",
    "OpsLatencyDaily",
    "OpsQueueDaily",
    "OpsReceivedDaily",
    "OpsReviewerDaily",
    "RollupCursor",
]


class OpsDecisionDaily(models.Model):
    """Human-decided items by the day of their first final decision, the queue that decided it, the policy in
    force (a correction's), the decider's vendor (null: in-house) and the item's priority."""

    day = models.DateField()
    queue = models.ForeignKey(Queue, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    policy = models.ForeignKey(Policy, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    vendor = models.ForeignKey(Vendor, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    priority = models.SmallIntegerField()
    decided = models.PositiveIntegerField(default=0)
    sla_counted = models.PositiveIntegerField(default=0)  # decided items that had a due time
    within_sla = models.PositiveIntegerField(default=0)  # … decided at or before it
    escalated = models.PositiveIntegerField(default=0)  # decided items escalated at least once on the way
    handle_seconds = models.FloatField(default=0)
    handle_count = models.PositiveIntegerField(default=0)
    turnaround_hist = models.JSONField(default=dict)  # received -> decided
    wait_hist = models.JSONField(default=dict)  # received -> claimed (the claim the final decision came from)
    handle_hist = models.JSONField(default=dict)  # claimed -> decided

    class Meta:
        indexes = [models.Index(fields=["day", "queue"], name="ops_decision_day_idx")]

    def __str__(self) -> str:
        return f"{self.day} queue {self.queue_id} policy {self.policy_id} vendor {self.vendor_id} p{self.priority}"


class OpsLatencyDaily(models.Model):
    """The decision rollup's histograms merged per day and one dimension: what a latency panel without a queue,
    vendor or policy filter reads (a few rows a day instead of one per queue x policy x vendor x priority).
    ``key`` is the queue, policy or vendor id, or the priority (null: no policy / in-house)."""

    day = models.DateField()
    dimension = models.CharField(max_length=10)  # queue, policy, vendor or priority
    key = models.BigIntegerField(null=True)
    decided = models.PositiveIntegerField(default=0)
    turnaround_hist = models.JSONField(default=dict)
    wait_hist = models.JSONField(default=dict)
    handle_hist = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["dimension", "day"], name="ops_latency_dim_day_idx")]

    def __str__(self) -> str:
        return f"{self.day} {self.dimension} {self.key}"


class OpsIntakeDaily(models.Model):
    """Items by the day they were received, their source, surface and kind, and the policy of their final
    decision in force (null: not decided by a person yet, auto-actioned, or no violation's policy)."""

    day = models.DateField()
    source = models.CharField(max_length=100)
    surface = models.CharField(max_length=100)
    kind = models.CharField(max_length=20)
    policy = models.ForeignKey(Policy, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    received = models.PositiveIntegerField(default=0)
    auto_actioned = models.PositiveIntegerField(default=0)
    routed_to_review = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["day"], name="ops_intake_day_idx")]

    def __str__(self) -> str:
        return f"{self.day} {self.source}/{self.surface}/{self.kind} policy {self.policy_id}"


class OpsReceivedDaily(models.Model):
    """Items received each day (golden left out) as they stand now: decided with a due time, and of them decided by
    it; closed (auto-actioned or decided), and of them by a rule. The home's "SLA attainment, 7 days" and
    "Automation rate today" tiles, which count by the day an item was received (the refresh recomputes an item's
    received day whenever a decision or an event touches it)."""

    day = models.DateField(unique=True)
    sla_decided = models.PositiveIntegerField(default=0)
    within_sla = models.PositiveIntegerField(default=0)
    closed = models.PositiveIntegerField(default=0)
    closed_by_rule = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.day}: {self.within_sla} of {self.sla_decided} within the SLA, {self.closed} closed"


class OpsQueueDaily(models.Model):
    """Items entering each queue per day ('queued' by triage or 'escalated' into it), golden copies included
    since they take a reviewer's time like any other: the history the capacity forecast is fitted on."""

    day = models.DateField()
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    entered = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["day", "queue"], name="ops_queue_day_idx")]

    def __str__(self) -> str:
        return f"{self.day} queue {self.queue_id}: {self.entered} entered"


class OpsReviewerDaily(models.Model):
    """A reviewer's decisions, handle time and productive time in a day (vendor: their team's, today's)."""

    day = models.DateField()
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    vendor = models.ForeignKey(Vendor, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    decisions = models.PositiveIntegerField(default=0)
    handle_seconds = models.FloatField(default=0)
    handle_count = models.PositiveIntegerField(default=0)
    productive_seconds = models.FloatField(default=0)

    class Meta:
        indexes = [models.Index(fields=["day"], name="ops_reviewer_day_idx")]

    def __str__(self) -> str:
        return f"{self.day} reviewer {self.reviewer_id}"


class OpsAppealDaily(models.Model):
    """Appeals by day, keyed by the contested item's first final decision: its queue, policy and decider's
    vendor (all null when a rule closed the item)."""

    day = models.DateField()
    queue = models.ForeignKey(Queue, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    policy = models.ForeignKey(Policy, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    vendor = models.ForeignKey(Vendor, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    appeals_received = models.PositiveIntegerField(default=0)  # appeal items received this day
    upheld = models.PositiveIntegerField(default=0)  # appeal decisions this day
    overturned = models.PositiveIntegerField(default=0)
    decisions_appealed = models.PositiveIntegerField(default=0)  # items first decided this day, appealed since

    class Meta:
        indexes = [models.Index(fields=["day"], name="ops_appeal_day_idx")]

    def __str__(self) -> str:
        return f"{self.day} appeals queue {self.queue_id} policy {self.policy_id} vendor {self.vendor_id}"


class BacklogAge(models.TextChoices):
    UNDER_1H = "lt1h", "< 1 h"
    H1_4 = "1-4h", "1-4 h"
    H4_24 = "4-24h", "4-24 h"
    D1_3 = "1-3d", "1-3 d"
    OVER_3D = "gt3d", "> 3 d"


class OpsBacklogSnapshot(models.Model):
    """Open items (queued or claimed) per queue and age since receipt, at one moment."""

    taken_at = models.DateTimeField(db_index=True)
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    age_bucket = models.CharField(max_length=8, choices=BacklogAge.choices)
    count = models.PositiveIntegerField(default=0)
    due_within_hour = models.PositiveIntegerField(default=0)  # due in the next hour, not yet overdue
    overdue = models.PositiveIntegerField(default=0)  # past their due time (the SLA) already

    def __str__(self) -> str:
        return f"{self.taken_at:%Y-%m-%d %H:%M} queue {self.queue_id} {self.age_bucket}: {self.count}"


class RollupCursor(models.Model):
    """How far the incremental refresh has read: the highest ids it has seen of each raw table."""

    name = models.CharField(max_length=50, unique=True)
    last_decision_id = models.BigIntegerField(default=0)
    last_event_id = models.BigIntegerField(default=0)
    last_item_id = models.BigIntegerField(default=0)
    refreshed_at = models.DateTimeField(null=True)
    # Bumped whenever rollup rows change (each refresh, each rebuild): figures cached from the rollups are keyed by
    # it, so a refresh or a backfill invalidates them (``analytics.selectors.freshness.operations_stamp``).
    generation = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"cursor {self.name}"
