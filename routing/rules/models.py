"""Routing and escalation rules: versioned rule sets and their rules, the decisions they made for items, daily
auto-action tallies, backtests and the incidents of rules that failed."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from queues.models import ReviewItem


class RuleSetKind(models.TextChoices):
    INTAKE = "intake", "Intake routing"
    APPEALS = "appeals", "Appeals routing"
    ESCALATION = "escalation", "Escalation"


class RuleSetStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted for approval"
    APPROVED = "approved", "Approved, not active"
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired (was active)"
    REJECTED = "rejected", "Rejected"


class RuleSet(models.Model):
    """One version of the rules of one kind. Only a draft changes; one version per kind is active.

    Life: draft -> submitted -> approved (by a different policy-staff member) -> active -> retired.
    Rollback re-activates a retired version. A submitted or approved version may run in shadow.
    """

    kind = models.CharField(max_length=20, choices=RuleSetKind.choices)
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=RuleSetStatus.choices, default=RuleSetStatus.DRAFT)
    title = models.CharField(max_length=200)
    change_note = models.TextField(blank=True, help_text="What this version changes and why.")
    default_queue = models.ForeignKey(
        "queues.Queue",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Where an item goes when no rule routes it (routing kinds).",
    )
    based_on = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    shadow = models.BooleanField(default=False, help_text="Runs beside the active version, recording only.")
    shadow_started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "version"], name="ruleset_unique_version"),
            models.UniqueConstraint(fields=["kind"], condition=Q(status="active"), name="ruleset_one_active_per_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} v{self.version}"

    @property
    def is_editable(self) -> bool:
        return self.status == RuleSetStatus.DRAFT


class RuleSetEditor(models.Model):
    """Someone who wrote part of a version: drafted or copied it, saved, moved or deleted a rule, changed its
    title, note or default queue, or submitted it. Four eyes: none of them may approve it."""

    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="editors")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # What they did to it ("draft", "rule.save", "ruleset.submit" …), each once, in the order first done.
    acts = models.JSONField(default=list)
    first_at = models.DateTimeField(default=timezone.now)
    last_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["rule_set", "first_at", "id"]
        constraints = [models.UniqueConstraint(fields=["rule_set", "user"], name="ruleset_editor_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} edited {self.rule_set_id}"


class RuleAction(models.TextChoices):
    ROUTE = "route", "Route to a queue"
    AUTO_ACTION = "auto_action", "Auto-action (close with a policy and enforcement action)"
    ESCALATE = "escalate", "Escalate"
    RAISE_PRIORITY = "raise_priority", "Raise priority (escalation rules)"
    TAG = "tag", "Add tags only (does not stop evaluation)"


class Rule(models.Model):
    """One ordered rule: a condition in the rule language and what to do when it holds."""

    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveIntegerField()
    name = models.SlugField(max_length=80)
    description = models.CharField(max_length=300, blank=True)
    condition = models.TextField()
    action = models.CharField(max_length=20, choices=RuleAction.choices)
    queue = models.ForeignKey(
        "queues.Queue",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Route/escalate: the destination. Auto-action: where items go past the daily cap or unscored.",
    )
    priority = models.SmallIntegerField(default=0, help_text="Route/escalate: the item's priority; raise: the step.")
    policy = models.ForeignKey("core.Policy", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    label = models.ForeignKey("core.DecisionLabel", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    enforcement_action = models.ForeignKey(
        "core.EnforcementAction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    daily_cap = models.PositiveIntegerField(null=True, blank=True, help_text="Auto-actions per day at most.")
    required_reviews = models.PositiveSmallIntegerField(default=1)
    tags = models.JSONField(default=list, blank=True)
    notify = models.BooleanField(default=False, help_text="Escalation: tell the destination queue's leads.")

    class Meta:
        ordering = ["rule_set", "position"]
        constraints = [
            models.UniqueConstraint(fields=["rule_set", "position"], name="rule_unique_position"),
            models.UniqueConstraint(fields=["rule_set", "name"], name="rule_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_set} #{self.position} {self.name}"


class RoutingDecision(models.Model):
    """What a rule set decided for one item, with what it saw. Shadow rows record without acting."""

    # item and rule_set are indexed by the (item, at) and (rule_set, shadow, at) indexes, which lead with them;
    # rule only where set (most items match no rule). Triage writes a row per item: each index costs it.
    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="routing_decisions", db_index=False)
    rule_set = models.ForeignKey(
        RuleSet, null=True, blank=True, on_delete=models.PROTECT, related_name="decisions", db_index=False
    )
    rule = models.ForeignKey(Rule, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False)
    # The rule's name, or "default", "builtin:child-safety", "unscored", "cap-reached:<rule>".
    matched = models.CharField(max_length=120)
    action = models.CharField(max_length=20, choices=RuleAction.choices)
    destination = models.CharField(max_length=200, help_text="queue:<slug>, auto:<policy>/<action>, or kept.")
    queue = models.ForeignKey("queues.Queue", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    priority = models.SmallIntegerField(default=0)
    tags = models.JSONField(default=list, blank=True)
    scores = models.JSONField(default=dict, blank=True)
    shadow = models.BooleanField(default=False)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["rule_set", "shadow", "at"]),
            models.Index(fields=["item", "at"]),
            models.Index(fields=["rule"], condition=models.Q(rule__isnull=False), name="routingdecision_rule_idx"),
        ]

    def __str__(self) -> str:
        return f"item {self.item_id}: {self.destination} ({self.matched})"


class AutoActionTally(models.Model):
    """How many items one auto-action rule closed on one day: the daily cap is checked against this."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "day"], name="auto_action_tally_unique")]

    def __str__(self) -> str:
        return f"{self.rule_id} {self.day}: {self.count}"


class BacktestStatus(models.TextChoices):
    PENDING = "pending", "Waiting for a worker"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Backtest(models.Model):
    """A rule set run over the stored items of a period, compared with the active version."""

    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="backtests")
    baseline = models.ForeignKey(RuleSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(max_length=20, choices=BacktestStatus.choices, default=BacktestStatus.PENDING)
    progress = models.FloatField(default=0.0)
    items = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    # Written whenever a running backtest makes progress: a worker killed mid-run (out of memory, a deploy)
    # writes nothing more, and the stall sweep ends the backtest 'failed' instead of 'running' for good.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"backtest {self.pk} of {self.rule_set}"


class RuleIncident(models.Model):
    """A rule that failed while routing items (or no longer builds): triage skipped it for those items and placed
    them by the version's other rules. One open incident per rule; each later failure adds to its count."""

    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="incidents")
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="incidents")
    # The exception's type and message: evaluation errors name types, never an item's content.
    error = models.CharField(max_length=300)
    items = models.PositiveIntegerField(default=0, help_text="Items the rule was skipped for.")
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule"], condition=Q(resolved_at__isnull=True), name="rule_incident_one_open_per_rule"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule_set} rule {self.rule.name}: {self.items} items"
