"""Intake's records: ``Idempotency-Key`` replays of API calls, and dead letters (tasks that failed for good)."""

from django.db import models
from django.utils import timezone

from ops_platform.core.fields import NulSafeJSONField
from ops_platform.core.models import ApiClient


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
