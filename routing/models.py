"""Intake bookkeeping (``Idempotency-Key`` replays), classifier scoring records (scores, usage, the
local-model registry, labeled data, dead letters, incidents) and routing rules with their decisions and incidents."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from ops_platform.core.fields import NulSafeJSONField
from ops_platform.core.models import ApiClient
from queues.models import ReviewItem


class IdempotencyRecord(models.Model):
    """One API call made with an ``Idempotency-Key``: replayed, not re-run, when the key comes again."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # Error bodies echo what the client sent (an unknown field's name may hold U+0000).
    response_body = NulSafeJSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "key"], name="idempotency_key_unique_per_client")]

    def __str__(self) -> str:
        return f"{self.client_id}:{self.key}"


# --- Classifier scoring ----------------------------------------------------------------------------


class Backend(models.TextChoices):
    OPENAI_MODERATION = "openai_moderation", "OpenAI moderation"
    OPENAI_POLICY = "openai_policy", "OpenAI policy classifier (LLM)"
    LOCAL = "local", "Local model"
    # Not a classifier: the end of every fallback chain. The item goes to people, marked unscored.
    UNSCORED = "unscored", "Unscored (human review)"


class ClassifierScore(models.Model):
    """One backend's scores for one item: a probability in [0, 1] per category (and per policy for the LLM).

    Unique per (item, backend, model version, prompt version), which makes scoring idempotent: a task
    that runs twice inserts nothing the second time.
    """

    # Indexed by the unique constraint below, which leads with it.
    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="scores", db_index=False)
    backend = models.CharField(max_length=32, choices=Backend.choices)
    model = models.CharField(max_length=100, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    prompt_version = models.CharField(max_length=64, blank=True)
    scores = models.JSONField(default=dict)
    # Per-item extras a reviewer may see (the LLM's rationale, why an item went unscored); never the text.
    detail = models.JSONField(default=dict, blank=True)
    call = models.ForeignKey("ClassifierCall", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item", "backend", "model_version", "prompt_version"], name="score_unique_per_model_version"
            )
        ]
        indexes = [models.Index(fields=["backend", "model_version", "created_at"])]

    def __str__(self) -> str:
        return f"{self.backend}:{self.model_version} on item {self.item_id}"


class CallOutcome(models.TextChoices):
    OK = "ok", "Scored"
    RATE_LIMITED = "rate_limited", "Rate limited (429)"
    SERVER_ERROR = "server_error", "Server error (5xx)"
    TIMEOUT = "timeout", "Timed out"
    CONNECTION = "connection", "Could not connect"
    MALFORMED = "malformed", "Malformed output"
    REFUSED = "refused", "Refused by the model"
    REJECTED = "rejected", "Request rejected (4xx)"
    UNAVAILABLE = "unavailable", "Backend not configured or no active model"
    CIRCUIT_OPEN = "circuit_open", "Skipped: circuit open"
    BUDGET_SPENT = "budget_spent", "Skipped: daily budget spent"


class ClassifierCall(models.Model):
    """Usage record of one call (or one skipped call) to a backend: what it cost and how it went."""

    backend = models.CharField(max_length=32, choices=Backend.choices)
    model = models.CharField(max_length=100, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    prompt_version = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=20, choices=CallOutcome.choices)
    items = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    # Counts of PII replaced before the call, by kind (never the values).
    redactions = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["backend", "created_at"])]

    def __str__(self) -> str:
        return f"{self.backend} {self.outcome} x{self.items}"


class ModelStatus(models.TextChoices):
    CANDIDATE = "candidate", "Candidate"
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired"
    REJECTED = "rejected", "Rejected (worse than the active version)"


class ModelVersion(models.Model):
    """A trained local model in the registry: the artifact, what it learned from, and how well it did."""

    name = models.SlugField(default="local")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=ModelStatus.choices, default=ModelStatus.CANDIDATE)
    artifact = models.BinaryField()
    artifact_sha256 = models.CharField(max_length=64)
    algorithm = models.TextField()
    # Where the labels came from and how many per category: {"sources": {...}, "categories": {cat: {n, pos}}}.
    training_data = models.JSONField(default=dict)
    # Held-out figures per category: {cat: {"auprc", "prevalence", "n", "positives"}}.
    metrics = models.JSONField(default=dict)
    thresholds = models.JSONField(default=dict)
    known_limits = models.TextField(blank=True)
    trained_at = models.DateTimeField(default=timezone.now)
    trained_by = models.CharField(max_length=200)
    promoted_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="model_version_unique"),
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(status="active"), name="one_active_model_per_name"
            ),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return f"{self.name}-v{self.version}"

    @property
    def mean_auprc(self) -> float | None:
        values = [m["auprc"] for m in self.metrics.values() if m.get("auprc") is not None]
        return sum(values) / len(values) if values else None


class LabeledExample(models.Model):
    """An imported labeled text (e.g. a public evaluation set). ``labels`` maps category to 0/1; a
    missing category means "not labeled", never "negative"."""

    dataset = models.SlugField(max_length=100)
    external_ref = models.CharField(max_length=200)
    text = models.TextField()
    labels = models.JSONField(default=dict)
    imported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "external_ref"], name="labeled_example_unique_ref")]

    def __str__(self) -> str:
        return f"{self.dataset}/{self.external_ref}"


class DeadLetter(models.Model):
    """A task that failed after its last retry. Ops see it and may re-drive it (send it again)."""

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    error_type = models.CharField(max_length=200)
    # The exception's message, cut short; exceptions from our code never carry item text.
    error = models.TextField(blank=True)
    retries = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    redriven_at = models.DateTimeField(null=True, blank=True)
    redriven_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.task} ({self.error_type})"


class IncidentKind(models.TextChoices):
    BUDGET_SPENT = "budget_spent", "Daily budget spent"
    CIRCUIT_OPEN = "circuit_open", "Circuit breaker opened"
    DEAD_LETTER = "dead_letter", "Task dead-lettered"


class ScoringIncident(models.Model):
    """An ops alert raised by scoring. One per (kind, backend, day) so a bad day is one line, not a flood."""

    kind = models.CharField(max_length=20, choices=IncidentKind.choices)
    backend = models.CharField(max_length=32, blank=True)
    day = models.DateField()
    message = models.TextField()
    occurrences = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "backend", "day"], name="scoring_incident_unique_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.backend} {self.day}"


# --- Routing and escalation rules ------------------------------------------------------------------


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
        "queues.Queue", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Where an item goes when no rule routes it (routing kinds).",
    )  # fmt: skip
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
        "queues.Queue", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Route/escalate: the destination. Auto-action: where items go past the daily cap or unscored.",
    )  # fmt: skip
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
