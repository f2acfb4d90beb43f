"""Hash banks and the images fetched for items: the stored copy, its hashes, and the bank entries it matched."""

from django.db import models
from django.utils import timezone

from queues.models import ReviewItem


class HashKind(models.TextChoices):
    PDQ = "pdq", "PDQ (perceptual, 256 bits)"
    MD5 = "md5", "MD5 (exact bytes)"


class HashBank(models.Model):
    """A named set of hashes, as hash-sharing programmes exchange them. Matching any entry is a signal for rules."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.slug


class BankHash(models.Model):
    bank = models.ForeignKey(HashBank, on_delete=models.CASCADE, related_name="hashes")
    kind = models.CharField(max_length=8, choices=HashKind.choices)
    value = models.CharField(max_length=64)  # lower-case hex: 64 digits for PDQ, 32 for MD5
    label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bank", "kind", "value"], name="bankhash_unique")]
        indexes = [models.Index(fields=["kind", "value"], name="bankhash_kind_value")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value} in {self.bank_id}"


class MediaStatus(models.TextChoices):
    STORED = "stored", "Stored"
    REFUSED = "refused", "Refused"


class MediaAsset(models.Model):
    """One of an item's media addresses, fetched once. Reviewers see the stored copy, never the address."""

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="media_assets", db_index=False)
    position = models.PositiveSmallIntegerField()
    host = models.CharField(max_length=255, blank=True)  # the host only: paths and queries may carry tokens
    status = models.CharField(max_length=16, choices=MediaStatus.choices)
    refusal = models.CharField(max_length=40, blank=True)
    content_type = models.CharField(max_length=32, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    md5 = models.CharField(max_length=32, blank=True)
    pdq = models.CharField(max_length=64, blank=True)
    pdq_quality = models.PositiveSmallIntegerField(null=True, blank=True)
    copy_name = models.CharField(max_length=255, blank=True)
    preview_name = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "position"], name="mediaasset_item_position")]

    def __str__(self) -> str:
        return f"item {self.item_id} media {self.position} ({self.status})"


class MediaMatch(models.Model):
    """An image that matched a bank entry, and how close (0 for MD5, the Hamming distance for PDQ)."""

    asset = models.ForeignKey(MediaAsset, on_delete=models.CASCADE, related_name="matches")
    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="media_matches")
    bank = models.ForeignKey(HashBank, on_delete=models.CASCADE, related_name="matches")
    kind = models.CharField(max_length=8, choices=HashKind.choices)
    distance = models.PositiveSmallIntegerField()
    label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["asset", "bank", "kind"], name="mediamatch_unique")]

    def __str__(self) -> str:
        return f"item {self.item_id} matched {self.bank_id} at {self.distance}"
