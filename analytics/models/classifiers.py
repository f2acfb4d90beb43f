"""Classifier performance rollups: weighted label counts per score bucket, week, model and truth source.

Every classifier metric (precision/recall at a threshold, PR curve, AUPRC, calibration, drift) is a sum
over these rows, so pages never read decisions or scores. ``analytics.rollups.classifiers`` fills them.
"""

from __future__ import annotations

from django.db import models

__all__ = ["ANY_VIOLATION", "BUCKETS", "ClassifierRollup", "ClassifierRollupCursor", "ClassifierView", "TruthSource"]

# Scores are bucketed to hundredths: bucket b holds scores in [b/100, (b+1)/100), and 1.0 joins bucket 99.
BUCKETS = 100
# The rollups' pseudo-category of the binary view: its score is the item's highest category score (flagged when
# any category is), its positive any violation the human label found, under any policy.
ANY_VIOLATION = "any"


class TruthSource(models.TextChoices):
    """Where the label a score is judged against comes from.

    The first two exist because each is wrong in a different way. ``decision`` (the item's current final human
    decision) is plentiful but biased: people only see what routing sent them, so items a rule closed
    or never queued are missing and the mix leans toward whatever the classifier and rules flagged.
    ``qa`` (QA ground truth on sampled items) is scarce but each sample was drawn with a known
    inclusion probability, so weighting it by 1/probability (Horvitz-Thompson) estimates the whole
    stream of decisions, auto-actions included. ``imported`` (labels imported by QA from elsewhere: a policy
    team's golden set, a crowd platform, a vendor's tool; the latest imported label of each item) judges the
    model on a set chosen outside the platform, unweighted, whether or not anyone here decided the items.
    """

    DECISION = "decision", "Final human decision"
    QA = "qa", "QA ground truth (weighted by 1/inclusion probability)"
    IMPORTED = "imported", "Imported labels (golden sets, crowd, vendor tools)"


class ClassifierView(models.TextChoices):
    """Per category (each category's score against violations of the policies mapped to it), or the binary
    view: any category flagged against any violation found."""

    CATEGORY = "category", "Per category"
    ANY = "any", "Any violation (any category flagged)"


class ClassifierRollup(models.Model):
    """Labelled scores of one (week, backend, model version, category, truth source, queue, vendor, bucket).

    ``positive``/``negative`` are weighted counts (1 per item for decisions and imported labels, 1/inclusion
    probability for QA), ``score_sum`` the weighted sum of the raw scores (exact mean predicted probability for
    calibration and drift), ``n`` the raw number of items. ``queue_id``/``vendor_id`` are the queue and
    vendor of the human decision (null: no queue / an in-house reviewer or a rule); they are plain ids,
    not foreign keys, so deleting a queue never touches history.
    """

    week = models.DateField(
        help_text="Monday of the ISO week of the human decision (local time); of the item's arrival for an imported "
        "label."
    )
    backend = models.CharField(max_length=32)
    model_version = models.CharField(max_length=100, blank=True)
    category = models.CharField(max_length=64, help_text="A classifier category, or 'any' (the binary view).")
    truth = models.CharField(max_length=16, choices=TruthSource.choices)
    queue_id = models.BigIntegerField(null=True, blank=True)
    vendor_id = models.BigIntegerField(null=True, blank=True)
    bucket = models.PositiveSmallIntegerField(help_text="floor(score x 100), 0..99; a score of 1.0 is 99.")
    positive = models.FloatField(default=0.0)
    negative = models.FloatField(default=0.0)
    score_sum = models.FloatField(default=0.0)
    n = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            # Every selector: one category/backend/model/truth over a run of weeks.
            models.Index(fields=["category", "backend", "model_version", "truth", "week"], name="clfrollup_slice_idx"),
            # The refresh deletes a week at a time.
            models.Index(fields=["week"], name="clfrollup_week_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.week} {self.backend}:{self.model_version} {self.category} {self.truth} b{self.bucket}"


class ClassifierRollupCursor(models.Model):
    """How far the refresh has read each source stream (by id, so back-dated rows are still seen)."""

    name = models.CharField(max_length=50, unique=True, default="classifier")
    last_decision_id = models.BigIntegerField(default=0)
    last_ground_truth_id = models.BigIntegerField(default=0)
    last_score_id = models.BigIntegerField(default=0)
    last_sample_id = models.BigIntegerField(default=0)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    # Counts every rewrite of a week's rollups (``week_replace``): figures computed from the rollups are cached
    # under it (``analytics.selectors.classifiers``), so a rewrite is seen by the next read.
    generation = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} cursor at {self.refreshed_at}"
