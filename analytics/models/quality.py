"""Quality rollups: closed QA samples and scored golden items per local day, mergeable like the operations
rollups (any period or slice is a SUM over rows). ``analytics.rollups.quality`` writes them; the vendor
scorecards read them instead of every QA sample of every vendor-week.

A sample counts on the day it closed, a golden result on the day it was scored (as ``qa.selectors`` slices
them). Foreign keys carry no database constraint, as in ``analytics.models.operations``.
"""

from __future__ import annotations

from django.db import models

from ops_platform.core.models import Policy, Vendor
from queues.models import Queue

__all__ = ["GoldenDaily", "QaSampleDaily"]


class QaSampleDaily(models.Model):
    """Closed QA samples per day, the decider's vendor and queue, and the pair of labels compared: the original
    decision's (violation and policy) and the blind re-review's (null when nobody re-reviewed it, e.g. an
    auto-action adjudicated directly). The label pairs are Cohen's kappa's confusion matrix; the weights are
    the inclusion-weighted (Hajek) sums of the quality score and the error rate (``qa.statistics``)."""

    day = models.DateField()
    vendor = models.ForeignKey(Vendor, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    queue = models.ForeignKey(Queue, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    original_violation = models.BooleanField()
    original_policy = models.ForeignKey(
        Policy, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    review_violation = models.BooleanField(null=True)
    review_policy = models.ForeignKey(
        Policy, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    samples = models.PositiveIntegerField(default=0)
    weight = models.FloatField(default=0)  # sum of 1 / inclusion probability
    loss = models.FloatField(default=0)  # sum of severity / inclusion probability
    error_weight = models.FloatField(default=0)  # sum of 1 / inclusion probability over samples found wrong

    class Meta:
        indexes = [models.Index(fields=["day", "vendor"], name="qa_sample_daily_idx")]

    def __str__(self) -> str:
        return f"{self.day} vendor {self.vendor_id} queue {self.queue_id}: {self.samples} samples"


class GoldenDaily(models.Model):
    """Golden copies scored per day, the decider's vendor, the golden item's queue and expected policy."""

    day = models.DateField()
    vendor = models.ForeignKey(Vendor, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    queue = models.ForeignKey(Queue, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    policy = models.ForeignKey(Policy, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    scored = models.PositiveIntegerField(default=0)
    correct = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["day", "vendor"], name="golden_daily_idx")]

    def __str__(self) -> str:
        return f"{self.day} vendor {self.vendor_id}: {self.correct}/{self.scored} golden"
