"""The QA program: sampling plans and samples, blind re-reviews, adjudications, golden items and calibration.

A sample is one decision (or one rule's auto-action) drawn for blind re-review, with the probability it
had of being drawn, so every estimate made from samples can be weighted back to the population. It keeps
a snapshot of what it re-reviews (verdict, policy, action, who decided, their vendor), because QA
statistics must not change when people move teams or decisions are later corrected.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from ops_platform.core.fields import NulSafeJSONField, NulSafeTextField
from ops_platform.core.models import ApiClient, EnforcementAction, Policy, Vendor
from queues.models import Decision, GroundTruth, ItemKind, Queue, ReviewItem


class SamplingPlan(models.Model):
    """Which decisions QA re-reviews, and how likely each is to be drawn.

    A plan applies to the decisions in its scope (queue, policy, vendor, reviewer; empty means any). When
    several active plans match a decision, the most specific one decides (reviewer, then vendor, then
    policy, then queue, then the catch-all). Within the plan a decision's rate is the highest of the rates
    that apply to it, a fixed function of the decision, so its inclusion probability is known exactly.
    """

    name = models.CharField(max_length=200)
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    vendor = models.ForeignKey(Vendor, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # Random share of every decision in scope.
    rate = models.FloatField(default=0.02, help_text="Share of decisions drawn, 0 to 1.")
    # Stratified by outcome: a separate rate for decisions that found a violation and for those that did not.
    rate_violation = models.FloatField(null=True, blank=True)
    rate_no_violation = models.FloatField(null=True, blank=True)
    # Targeted: uncertain classifier scores, rule auto-actions, a reviewer's first decisions.
    low_confidence_rate = models.FloatField(null=True, blank=True)
    low_confidence_band = models.FloatField(
        default=0.2, help_text="A top score within this distance of 0.5 counts as low confidence."
    )
    auto_action_rate = models.FloatField(null=True, blank=True, help_text="Share of rule auto-actions drawn.")
    new_reviewer_decisions = models.PositiveIntegerField(default=0, help_text="A reviewer's first N decisions …")
    new_reviewer_rate = models.FloatField(null=True, blank=True, help_text="… are drawn at this rate.")
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(rate__gte=0) & Q(rate__lte=1), name="plan_rate_is_a_probability"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def specificity(self) -> int:
        return (
            8 * (self.reviewer_id is not None)
            + 4 * (self.vendor_id is not None)
            + 2 * (self.policy_id is not None)
            + (self.queue_id is not None)
        )


class SampleReason(models.TextChoices):
    RANDOM = "random", "Random share"
    OUTCOME = "outcome", "Stratified by outcome"
    LOW_CONFIDENCE = "low_confidence", "Low classifier confidence"
    AUTO_ACTION = "auto_action", "Rule auto-action"
    NEW_REVIEWER = "new_reviewer", "Reviewer's first decisions"
    MANUAL = "manual", "Chosen by a QA lead"


class SampleState(models.TextChoices):
    PENDING = "pending", "Waiting for blind re-review"
    CLAIMED = "claimed", "Being re-reviewed"
    ADJUDICATION = "adjudication", "Disagreement: waiting for adjudication"
    CLOSED = "closed", "Closed"


class ErrorType(models.TextChoices):
    NONE = "", "No error"
    FALSE_POSITIVE = "false_positive", "False positive (actioned, but no violation)"
    FALSE_NEGATIVE = "false_negative", "False negative (a violation was missed)"
    WRONG_POLICY = "wrong_policy", "Wrong policy"
    WRONG_ACTION = "wrong_action", "Wrong enforcement action"


# The top of an error's severity weight (critical); a right decision weighs 0.
MAX_SEVERITY = 4.0


class QaSample(models.Model):
    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="qa_samples")
    # The re-reviewed decision; null when a rule auto-actioned the item (no person decided).
    decision = models.OneToOneField(Decision, null=True, blank=True, on_delete=models.CASCADE, related_name="qa_sample")
    plan = models.ForeignKey(SamplingPlan, null=True, blank=True, on_delete=models.SET_NULL, related_name="samples")
    reason = models.CharField(max_length=20, choices=SampleReason.choices)
    inclusion_probability = models.FloatField()
    sampled_at = models.DateTimeField()

    # What is being checked, as it was.
    original_is_violation = models.BooleanField()
    original_policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    original_action = models.ForeignKey(
        EnforcementAction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    original_reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    original_vendor = models.ForeignKey(Vendor, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    original_queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    original_decided_at = models.DateTimeField()

    state = models.CharField(max_length=20, choices=SampleState.choices, default=SampleState.PENDING)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    # The outcome, set when the sample closes (agreement, or the adjudicator's finding).
    agreed = models.BooleanField(null=True, blank=True)
    error_type = models.CharField(max_length=20, choices=ErrorType.choices, blank=True)
    severity = models.FloatField(default=0, help_text="0 when right; up to 4 (critical) for an error.")
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["state", "sampled_at"], name="qasample_work_idx"),
            models.Index(fields=["original_reviewer", "closed_at"]),
            models.Index(fields=["original_vendor", "closed_at"]),
        ]
        constraints = [
            # One sample per auto-actioned item (decision samples are unique by their one-to-one).
            models.UniqueConstraint(fields=["item"], condition=Q(decision__isnull=True), name="one_sample_per_auto"),
        ]

    def __str__(self) -> str:
        return f"QA sample {self.pk} of item {self.item_id}"


class SampleSkip(models.Model):
    """A QA reviewer gave a claimed sample back unreviewed: the next claim offers it to someone else first."""

    sample = models.ForeignKey(QaSample, on_delete=models.CASCADE, related_name="skips")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=500)
    skipped_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["reviewer", "sample"], name="qa_sampleskip_reviewer_idx")]

    def __str__(self) -> str:
        return f"sample {self.sample_id} skipped by {self.reviewer_id}"


class QaReview(models.Model):
    """A blind re-review: the QA reviewer's own decision, made without seeing the original."""

    sample = models.OneToOneField(QaSample, on_delete=models.CASCADE, related_name="review")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    is_violation = models.BooleanField()
    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    action = models.ForeignKey(EnforcementAction, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    rationale = models.TextField(blank=True)
    decided_at = models.DateTimeField()
    agrees = models.BooleanField()

    def __str__(self) -> str:
        return f"QA review of sample {self.sample_id}"


class Adjudication(models.Model):
    """A QA lead's final word where the original decision and the blind re-review disagreed."""

    sample = models.OneToOneField(QaSample, on_delete=models.CASCADE, related_name="adjudication")
    adjudicator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    is_violation = models.BooleanField()
    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    action = models.ForeignKey(EnforcementAction, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    error_type = models.CharField(max_length=20, choices=ErrorType.choices, blank=True)
    severity = models.FloatField(default=0)
    rationale = models.TextField()
    decided_at = models.DateTimeField()
    # The decision that corrected the original item, when the original was wrong.
    correction = models.ForeignKey(Decision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self) -> str:
        return f"adjudication of sample {self.sample_id}"


class SamplingCursor(models.Model):
    """How far the sampler has read each stream (decisions, auto-actions), so each is considered once."""

    stream = models.CharField(max_length=50, unique=True)
    last_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.stream} at {self.last_id}"


# --- golden items -----------------------------------------------------------------------------------


class GoldenItem(models.Model):
    """Content with a known answer, curated by QA leads; copies are injected into live queues and scored.

    It keeps everything a reviewer sees of an item, so a copy renders as a real item does: the content, and
    the context around it (a real client's source, an author, the client's metadata, the kind), taken from
    the item it was made from or, for one written by a lead, from a real item of its queue.
    """

    # NUL-safe like the item fields they are copied from and to.
    text = NulSafeTextField()
    media_urls = models.JSONField(default=list, blank=True)
    kind = models.CharField(
        max_length=20,
        choices=[(ItemKind.CONTENT, ItemKind.CONTENT.label), (ItemKind.USER_REPORT, ItemKind.USER_REPORT.label)],
        default=ItemKind.CONTENT,
    )
    # Blank: none known when it was written; each copy then takes them from a real item of the queue.
    source = models.SlugField(
        max_length=100, blank=True, db_index=False, help_text="The real client source its copies carry."
    )
    author_ref = models.CharField(max_length=200, blank=True)
    metadata = NulSafeJSONField(default=dict, blank=True)
    surface = models.CharField(max_length=100, blank=True)
    language = models.CharField(max_length=16, blank=True)
    report_reasons = NulSafeJSONField(default=list, blank=True)
    # Where it came from: an adjudicated item, or written by the lead (null).
    origin_item = models.ForeignKey(ReviewItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="golden_items")
    expected_is_violation = models.BooleanField()
    expected_policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    expected_action = models.ForeignKey(
        EnforcementAction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rationale = models.TextField(blank=True, help_text="Why this is the answer; shown in coaching.")
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"golden item {self.pk}"


class GoldenRate(models.Model):
    """How many golden copies a queue receives: this share of the items that enter it."""

    queue = models.OneToOneField(Queue, on_delete=models.CASCADE, related_name="golden_rate")
    rate = models.FloatField(default=0.01)
    last_injected_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.queue}: {self.rate:.1%} golden"


class GoldenInjection(models.Model):
    """One copy of a golden item placed in a live queue, and how it was scored once decided."""

    golden = models.ForeignKey(GoldenItem, on_delete=models.CASCADE, related_name="injections")
    item = models.OneToOneField(ReviewItem, on_delete=models.CASCADE, related_name="golden_injection")
    injected_at = models.DateTimeField()
    decision = models.OneToOneField(Decision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    vendor = models.ForeignKey(Vendor, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    correct = models.BooleanField(null=True, blank=True)
    scored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["reviewer", "scored_at"]), models.Index(fields=["vendor", "scored_at"])]

    def __str__(self) -> str:
        return f"golden {self.golden_id} as item {self.item_id}"


# --- calibration ------------------------------------------------------------------------------------


class CalibrationSession(models.Model):
    """A set of items every participant reviews independently, then discusses item by item."""

    name = models.CharField(max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    participants = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="calibration_sessions")
    # Until closed, nobody sees anyone else's answers.
    closed_at = models.DateTimeField(null=True, blank=True)
    # The report's overall and per-person figures, computed once when the session closes (ratings are final
    # then), so the report pages only read one page of item rows.
    figures = models.JSONField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class CalibrationItem(models.Model):
    session = models.ForeignKey(CalibrationSession, on_delete=models.CASCADE, related_name="session_items")
    item = models.ForeignKey(ReviewItem, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["session", "item"], name="calibration_item_once")]

    def __str__(self) -> str:
        return f"{self.session_id}#{self.position}"


class CalibrationRating(models.Model):
    session_item = models.ForeignKey(CalibrationItem, on_delete=models.CASCADE, related_name="ratings")
    participant = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    is_violation = models.BooleanField()
    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    rationale = models.TextField(blank=True)
    rated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session_item", "participant"], name="calibration_rating_once")]

    def __str__(self) -> str:
        return f"{self.participant_id} on {self.session_item_id}"


# --- labels made elsewhere ---------------------------------------------------------------------------------


class LabelTarget(models.TextChoices):
    GROUND_TRUTH = "ground_truth", "Ground truth for items"
    CALIBRATION = "calibration", "Ratings in a calibration session"


class LabelImport(models.Model):
    """One batch of labels made outside the platform (a vendor's tool, a crowd platform, a policy team's golden
    set), imported by a QA person, as ground truth or as a calibration session's ratings."""

    target = models.CharField(max_length=20, choices=LabelTarget.choices)
    source = models.CharField(max_length=100, help_text="The system the labels were made in.")
    session = models.ForeignKey(
        CalibrationSession, null=True, blank=True, on_delete=models.CASCADE, related_name="label_imports"
    )
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    client = models.ForeignKey(ApiClient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    imported_at = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.count} labels from {self.source}"


class ImportedLabel(models.Model):
    """One imported label with its provenance: who made it (a reference in the source system), when, where."""

    batch = models.ForeignKey(LabelImport, on_delete=models.CASCADE, related_name="labels")
    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="+")
    rater = models.CharField(max_length=200, help_text="Who labelled it, as the source system names them.")
    labelled_at = models.DateTimeField()
    is_violation = models.BooleanField()
    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    ground_truth = models.OneToOneField(
        GroundTruth, null=True, blank=True, on_delete=models.SET_NULL, related_name="imported_label"
    )
    rating = models.OneToOneField(
        CalibrationRating, null=True, blank=True, on_delete=models.CASCADE, related_name="imported_label"
    )

    class Meta:
        indexes = [models.Index(fields=["item", "labelled_at"], name="qa_importedlabel_item_idx")]

    def __str__(self) -> str:
        return f"label of item {self.item_id} by {self.rater}"


class QaScorecardDaily(models.Model):
    """Closed QA samples of one local day (by ``closed_at``) summed per original reviewer, vendor and queue, the
    two labels compared (the decision's and the blind re-review's), whether it was adjudicated and the error
    found: what scorecards and the coaching page read instead of the samples (``qa.rollups``). Analytics' rollup
    upkeep recomputes a day of it with its other quality rollups. No foreign-key constraints, as rollups."""

    day = models.DateField()
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    vendor = models.ForeignKey(Vendor, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    queue = models.ForeignKey(Queue, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    original_violation = models.BooleanField()
    original_policy = models.ForeignKey(
        Policy, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    review_violation = models.BooleanField(null=True)  # None: closed without a re-review
    review_policy = models.ForeignKey(
        Policy, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    adjudicated = models.BooleanField()
    error_type = models.CharField(max_length=20, blank=True)
    samples = models.PositiveIntegerField(default=0)
    weight = models.FloatField(default=0)  # sum of 1 / inclusion probability
    weight_sq = models.FloatField(default=0)  # sum of its squares (Kish's effective sample size)
    loss = models.FloatField(default=0)  # sum of severity / inclusion probability

    class Meta:
        indexes = [
            models.Index(fields=["reviewer", "day"], name="qa_scorecard_reviewer_idx"),
            models.Index(fields=["day", "vendor"], name="qa_scorecard_day_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.day} reviewer {self.reviewer_id}: {self.samples} samples"
