"""Classifier scoring records: scores, usage per call, the local-model registry, labeled data and ops incidents."""

from decimal import Decimal

from django.db import models
from django.utils import timezone

from queues.models import ReviewItem


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


class IncidentKind(models.TextChoices):
    BUDGET_SPENT = "budget_spent", "Daily budget spent"
    CIRCUIT_OPEN = "circuit_open", "Circuit breaker opened"
    DEAD_LETTER = "dead_letter", "Task dead-lettered"
    # Standing: open while no active backend produces sexual/minors, resolved when one does again.
    COVERAGE_GAP = "coverage_gap", "Child-safety guard has no score"


class ScoringIncident(models.Model):
    """An ops alert raised by scoring. One per (kind, backend, day) so a bad day is one line, not a flood."""

    kind = models.CharField(max_length=20, choices=IncidentKind.choices)
    backend = models.CharField(max_length=32, blank=True)
    day = models.DateField()
    message = models.TextField()
    occurrences = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    # Set for a standing incident (coverage gap) once its cause is gone; day-bound incidents leave it empty.
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "backend", "day"], name="scoring_incident_unique_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.backend} {self.day}"
