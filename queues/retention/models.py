"""Legal holds and erasure requests. Part of the queues app (gathered by ``queues/models.py``); names queues' models by
string only. Neither holds content: an erasure keeps ids, counts and times, never the reference it erased."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class LegalHold(models.Model):
    """Keeps an item, or every item of an account, out of the retention purge and refuses their erasure while it is
    in force (not cleared)."""

    item = models.ForeignKey(
        "queues.ReviewItem", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    account = models.ForeignKey(
        "queues.Account", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    reason = models.CharField(max_length=500, help_text="The matter or order the hold is for.")
    set_at = models.DateTimeField()
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(item__isnull=False, account__isnull=True) | Q(item__isnull=True, account__isnull=False),
                name="legalhold_item_or_account",
            )
        ]
        indexes = [
            models.Index(fields=["item"], condition=Q(cleared_at__isnull=True), name="legalhold_item_idx"),
            models.Index(fields=["account"], condition=Q(cleared_at__isnull=True), name="legalhold_account_idx"),
        ]

    def __str__(self) -> str:
        target = f"item {self.item_id}" if self.item_id else f"account {self.account_id}"
        return f"legal hold {self.pk} on {target}"


class ErasureState(models.TextChoices):
    RUNNING = "running", "Running"
    DONE = "done", "Done"


class Erasure(models.Model):
    """One erasure request of an API client: by account (the account row, renamed to a pseudonym) or by item ids."""

    source = models.SlugField(max_length=100)
    # The client's Idempotency-Key: the same key answers with this erasure instead of starting another.
    idempotency_key = models.CharField(max_length=200, blank=True)
    account = models.ForeignKey(
        "queues.Account", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    by_account = models.BooleanField(default=False)
    # The ids asked for (by item ids); with an account, empty: the items erased are counted, not listed.
    item_ids = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=20, choices=ErasureState.choices, default=ErasureState.RUNNING)
    items_erased = models.PositiveIntegerField(default=0)
    # What each app's step changed, by step name (rows or files).
    wiped = models.JSONField(default=dict, blank=True)
    requested_by = models.CharField(max_length=200)
    requested_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "idempotency_key"], condition=~Q(idempotency_key=""), name="erasure_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"erasure {self.pk} ({self.state})"
