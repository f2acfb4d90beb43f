"""Kernel models shared by every app."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    """Roles are Django groups of the same name; ``roles.py`` keeps their permissions."""

    REVIEWER = "reviewer", "Reviewer"
    SENIOR_REVIEWER = "senior_reviewer", "Senior reviewer / QA"
    POLICY_STAFF = "policy_staff", "Policy staff"
    OPS_MANAGER = "ops_manager", "Ops manager"
    ADMIN = "admin", "Admin"


class User(AbstractUser):
    class Meta:
        # Role-level permissions live here because they are about people, not about any one table.
        permissions = [
            ("review_items", "Can claim and decide items in permitted queues"),
            ("bulk_decide", "Can apply one decision to many items"),
            ("perform_qa", "Can re-review, adjudicate and curate golden items"),
            ("edit_rules", "Can draft and submit routing rule sets"),
            ("approve_rules", "Can approve, activate and roll back rule sets"),
            ("edit_policies", "Can edit the policy taxonomy"),
            ("view_analytics", "Can see operations dashboards"),
            ("manage_wellness", "Can set exposure caps and wellness settings"),
            ("manage_platform", "Can manage users, vendors, API clients and retention"),
            ("act_on_accounts", "Can act on accounts: actions, approvals, reversals, labels, strikes"),
        ]

    def has_role(self, role: Role | str) -> bool:
        return self.groups.filter(name=str(role)).exists()

    @property
    def roles(self) -> list[str]:
        return sorted(self.groups.values_list("name", flat=True))


class SsoIdentity(models.Model):
    """The identity provider's account behind a person who signs in with single sign-on (docs/sso.md).

    People are matched on the provider's issuer and subject, never on an email address or a username a
    provider may let its users change."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="sso_identity")
    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_issuer_subject")]

    def __str__(self) -> str:
        return f"{self.user} at {self.issuer}"


class Vendor(models.Model):
    """An outsourced review provider, with the contract targets its scorecard is measured against."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    target_sla_attainment = models.DecimalField(
        max_digits=5, decimal_places=4, default=0.95, help_text="Share of items decided within SLA, 0 to 1."
    )
    target_quality_score = models.DecimalField(
        max_digits=5, decimal_places=4, default=0.90, help_text="Severity-weighted QA quality score, 0 to 1."
    )
    cost_per_decision = models.DecimalField(max_digits=8, decimal_places=4, default=0)
    currency = models.CharField(max_length=3, default="USD")
    is_active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class Team(models.Model):
    """A group of reviewers; a team with a vendor is that vendor's, one without is in-house."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    vendor = models.ForeignKey(Vendor, null=True, blank=True, on_delete=models.PROTECT, related_name="teams")

    def __str__(self) -> str:
        return self.name

    @property
    def is_in_house(self) -> bool:
        return self.vendor_id is None


class Skill(models.Model):
    """What a queue may require of a reviewer: a policy speciality, a clearance, a market."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.name


class ReviewerProfile(models.Model):
    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="reviewer_profile")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="members")
    skills = models.ManyToManyField(Skill, blank=True, related_name="reviewers")
    languages = models.JSONField(default=list, blank=True, help_text='ISO 639-1 codes, e.g. ["en", "es"].')
    # Wellness preferences: how media is shown until revealed, and when to suggest a break.
    blur_media = models.BooleanField(default=True)
    greyscale_media = models.BooleanField(default=True)
    break_reminder_minutes = models.PositiveIntegerField(default=50)

    def __str__(self) -> str:
        return f"profile of {self.user}"

    @property
    def vendor(self) -> Vendor | None:
        return self.team.vendor if self.team else None


class Severity(models.IntegerChoices):
    LOW = 1, "Low"
    MEDIUM = 2, "Medium"
    HIGH = 3, "High"
    CRITICAL = 4, "Critical"


class ClassifierCategory(models.TextChoices):
    """The categories classifiers score; policies map onto them."""

    SEXUAL = "sexual", "Sexual"
    HATE = "hate", "Hate"
    HARASSMENT = "harassment", "Harassment"
    VIOLENCE = "violence", "Violence"
    SELF_HARM = "self-harm", "Self-harm"
    SEXUAL_MINORS = "sexual/minors", "Sexual / minors"
    HATE_THREATENING = "hate/threatening", "Hate / threatening"
    VIOLENCE_GRAPHIC = "violence/graphic", "Violence / graphic"


class EnforcementAction(models.Model):
    """What the platform does about a violation (remove, warn, suspend …)."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # Orders actions from mildest to harshest, so "stronger action" can be compared.
    strength = models.PositiveSmallIntegerField(default=0)
    # Retired instead of deleted: decisions keep the action they recorded; new decisions cannot choose it.
    is_active = models.BooleanField(default=True, help_text="Untick to retire; used actions are never deleted.")

    class Meta:
        ordering = ["strength", "slug"]

    def __str__(self) -> str:
        return self.name


class Policy(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    severity = models.PositiveSmallIntegerField(choices=Severity.choices, default=Severity.MEDIUM)
    guidelines = models.TextField(help_text="The written policy reviewers and the LLM classifier apply.")
    # Bumped whenever the guidelines text changes, so prompts and decisions can cite the version.
    guidelines_version = models.PositiveIntegerField(default=1)
    classifier_categories = models.JSONField(
        default=list, blank=True, help_text="Classifier categories this policy maps to (may be empty)."
    )
    # The scoring backends tried in order for this policy; empty means settings.SCORING_DEFAULT_CHAIN.
    classifier_chain = models.JSONField(
        default=list, blank=True, help_text='Scoring backends in fallback order, e.g. ["openai_policy", "local"].'
    )
    enforcement_actions = models.ManyToManyField(EnforcementAction, blank=True, related_name="policies")
    # Some policies (child safety) must always be decided by people, never auto-actioned.
    human_review_only = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True, help_text="Untick to retire; used policies are never deleted.")
    # Retention after an item's final decision under this policy (docs/retention.md); empty: the settings' default.
    content_retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Days an item's content is kept after its final decision (empty: default)."
    )
    record_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Days decisions keep their free-text rationale (empty: default); at least the content retention.",
    )

    class Meta:
        verbose_name_plural = "policies"
        ordering = ["-severity", "slug"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        unknown = set(self.classifier_categories) - set(ClassifierCategory.values)
        if unknown:
            raise ValidationError({"classifier_categories": f"Unknown categories: {', '.join(sorted(unknown))}"})
        unknown = set(self.classifier_chain) - set(settings.SCORING_BACKENDS)
        if unknown:
            raise ValidationError({"classifier_chain": f"Unknown backends: {', '.join(sorted(unknown))}"})
        content_days = self.content_retention_days or settings.CONTENT_RETENTION_DAYS
        record_days = self.record_retention_days or settings.RECORD_RETENTION_DAYS
        if record_days < content_days:
            raise ValidationError(
                {"record_retention_days": f"Decisions must be kept at least as long as content ({content_days} days)."}
            )


class DecisionLabel(models.Model):
    """A label a reviewer may apply under a policy; ``is_violation`` separates 'violates' from 'fine'."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="labels")
    slug = models.SlugField()
    name = models.CharField(max_length=200)
    is_violation = models.BooleanField(default=True)
    # As for actions: a label decisions carry is retired, never deleted (deleting would strip it from them).
    is_active = models.BooleanField(default=True, help_text="Untick to retire; used labels are never deleted.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["policy", "slug"], name="label_unique_per_policy")]
        ordering = ["policy", "slug"]

    def __str__(self) -> str:
        return f"{self.policy.slug}:{self.slug}"


class ApiScope(models.TextChoices):
    ITEMS_WRITE = "items:write", "Submit items and reports"
    ITEMS_READ = "items:read", "Read item status"
    APPEALS_WRITE = "appeals:write", "Submit appeals"
    ALERTS_READ = "alerts:read", "Receive ops alerts"
    METRICS_READ = "metrics:read", "Read ops metrics"
    REVIEWS_WRITE = "reviews:write", "Claim, decide and release review items as a named reviewer"
    QA_WRITE = "qa:write", "QA re-review, adjudication and calibration sessions as a named person"
    QA_READ = "qa:read", "Read closed calibration sessions' reports as a named person"
    ERASURES_WRITE = "erasures:write", "Erase content and accounts of your source, and read the erasures' status"


class ApiClient(models.Model):
    """An integrating service. Its items carry its ``source``; decisions go back to ``callback_url``."""

    name = models.CharField(max_length=200)
    source = models.SlugField(unique=True, help_text="Namespace of this client's external ids.")
    scopes = models.JSONField(default=list)
    callback_url = models.URLField(blank=True)
    webhook_secret = models.CharField(max_length=128, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute.")
    # Whose reviewers this client may act for (the ``reviewer`` a review call names): a vendor's tool acts only
    # for that vendor's team members; a client with no vendor only for in-house reviewers.
    vendor = models.ForeignKey(
        Vendor,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="api_clients",
        help_text="A vendor's tool acts only for that vendor's reviewers; none: for in-house reviewers only.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # DRF treats request.user as a user-like object; an authenticated client is one.
    is_authenticated: ClassVar[bool] = True

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        unknown = set(self.scopes) - set(ApiScope.values)
        if unknown:
            raise ValidationError({"scopes": f"Unknown scopes: {', '.join(sorted(unknown))}"})

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


KEY_PREFIX = "tsk_"


def _digest(raw_key: str) -> str:
    # Keys are 256-bit random strings, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def usable(self) -> ApiKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    """Only a digest of the key is stored; the key itself is shown once, when it is made."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="keys")
    lookup = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Set on rotation: the grace period ends.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{KEY_PREFIX}{self.lookup}_…"

    @classmethod
    def generate(cls, client: ApiClient) -> tuple[ApiKey, str]:
        lookup = secrets.token_hex(8)
        raw = f"{KEY_PREFIX}{lookup}_{secrets.token_urlsafe(32)}"
        return cls(client=client, lookup=lookup, digest=_digest(raw)), raw

    @staticmethod
    def split(raw_key: str) -> str | None:
        """The lookup part of a presented key, or None when it is not shaped like one of ours."""
        if not raw_key.startswith(KEY_PREFIX):
            return None
        lookup, sep, secret = raw_key[len(KEY_PREFIX) :].partition("_")
        if not sep or len(lookup) != 16 or not secret:
            return None
        return lookup

    def matches(self, raw_key: str) -> bool:
        return hmac.compare_digest(self.digest, _digest(raw_key))


class AuditLogIsAppendOnly(RuntimeError):
    def __init__(self) -> None:
        super().__init__("The audit log is append-only: entries cannot be changed or deleted.")


class AuditLogQuerySet(models.QuerySet["AuditLog"]):
    def update(self, **kwargs: Any) -> int:
        raise AuditLogIsAppendOnly()

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly()


class AuditLog(models.Model):
    """Who did what, when, to what, with the state before and after, and why.

    Append-only: the model refuses updates and deletes, and on PostgreSQL a trigger refuses them too.
    """

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # Who acted when it was not a person: an API client, a rule, a periodic task.
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100)
    target_id = models.CharField(max_length=100)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target_type}#{self.target_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise AuditLogIsAppendOnly()
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly()


class WebhookEventType(models.TextChoices):
    DECISION_FINAL = "decision.final", "Final decision on an item"
    APPEAL_OUTCOME = "appeal.outcome", "Outcome of an appeal"
    DECISION_REVERTED = "decision.reverted", "A final decision taken back (a bulk decision reverted)"
    ALERT_OPENED = "alert.opened", "An ops alert opened"
    ACCOUNT_ACTION = "account.action", "An action on an account took effect or was reversed"


class WebhookEventQuerySet(models.QuerySet["WebhookEvent"]):
    def pending(self) -> WebhookEventQuerySet:
        return self.filter(delivered_at__isnull=True, gave_up_at__isnull=True)


class WebhookEvent(models.Model):
    """One message to a client's callback URL, sent (and re-sent) until a 2xx answer or the last attempt.

    The payload holds ids, labels, policy and action, never content: it leaves the platform. Receivers
    dedupe by ``event_id``, which stays the same across retries and re-drives.
    """

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="webhook_events")
    event_type = models.CharField(max_length=50, choices=WebhookEventType.choices)
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    # Attempts since the event was made or last re-driven; the last allowed one failing gives up.
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the next attempt is due; the sweeper re-sends events whose attempt is long overdue.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    gave_up_at = models.DateTimeField(null=True, blank=True)

    objects = WebhookEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sweeper's scan: only events still in flight, which are few.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(delivered_at__isnull=True, gave_up_at__isnull=True),
                name="webhook_event_pending_idx",
            ),
            models.Index(fields=["client", "-created_at"], name="webhook_event_client_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"

    @property
    def state(self) -> str:
        if self.delivered_at is not None:
            return "delivered"
        if self.gave_up_at is not None:
            return "gave up"
        return "pending"


class WebhookDelivery(models.Model):
    """One attempt to deliver an event: what the receiver answered (or how the call failed) and how long it took."""

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    attempt = models.PositiveSmallIntegerField()
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # The class of the error when there was no HTTP answer (ConnectError, ReadTimeout …).
    error = models.CharField(max_length=100, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    delivered = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["event", "at", "id"]
        # /metrics counts the attempts of the last minutes (analytics/exporter/refresh.py).
        indexes = [models.Index(fields=["at"], name="webhook_delivery_at_idx")]

    def __str__(self) -> str:
        outcome = self.status_code or self.error
        return f"{self.event.event_id} attempt {self.attempt}: {outcome}"


class PeriodicJobRun(models.Model):
    """When each job of the beat schedule last started in-process (``ops_platform.core.periodic``, the embedded
    mode). A start is claimed by a conditional UPDATE of ``started_at``, so web processes and threads sharing one
    database never run a job twice for one slot."""

    name = models.CharField(max_length=200, primary_key=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    failed = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.name} started {self.started_at}"
