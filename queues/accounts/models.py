"""Accounts (one per source and author reference), their strikes, labels, actions, reports and history.

Part of the queues app (gathered by ``queues/models.py``): the decision services add strikes in the decision's
own transaction. This module names queues' models by string only, so ``queues.models`` can import it.
Design: docs/accounts.md.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

from ops_platform.core.models import DecisionLabel, Policy


class AccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    WARNED = "warned", "Warned"
    RESTRICTED = "restricted", "Restricted"
    SUSPENDED = "suspended", "Suspended"


class Account(models.Model):
    """An author as the integrating service names it: pseudonymous, only its reference and what it sends."""

    source = models.SlugField(max_length=100, db_index=False)
    ref = models.CharField(max_length=200)
    first_seen_at = models.DateTimeField()
    # When the account was created on the client's platform, when its items say (metadata author_created_at).
    external_created_at = models.DateTimeField(null=True, blank=True)
    # The strongest account action in force, kept by the services (queues.accounts.actions).
    status = models.CharField(max_length=20, choices=AccountStatus.choices, default=AccountStatus.ACTIVE)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "ref"], name="account_unique_source_ref")]
        indexes = [models.Index(fields=["status"], condition=~Q(status="active"), name="account_actioned_idx")]

    def __str__(self) -> str:
        return f"{self.source}/{self.ref}"


def default_strike_expiry() -> timedelta:
    return timedelta(days=settings.ACCOUNT_STRIKE_EXPIRY_DAYS)


class PolicyStrikes(models.Model):
    """What a final violation of a policy costs its author's account. A policy without one: weight 1, its own
    family, strikes expiring after ACCOUNT_STRIKE_EXPIRY_DAYS, no second approver for suspensions."""

    policy = models.OneToOneField(Policy, on_delete=models.CASCADE, related_name="strike_settings")
    family = models.SlugField(max_length=100, help_text="Thresholds count the strikes of a family together.")
    weight = models.PositiveSmallIntegerField(default=1, help_text="Strikes per final violation; 0 for none.")
    expires_after = models.DurationField(default=default_strike_expiry)
    suspension_needs_approval = models.BooleanField(
        default=False, help_text="A suspension under this policy takes effect only once a second person approves."
    )

    class Meta:
        verbose_name_plural = "policy strikes"

    def __str__(self) -> str:
        return f"{self.policy.slug}: {self.weight} in {self.family}"


class LabelStrikes(models.Model):
    """A decision label's strike weight, overriding its policy's (the highest on a decision wins)."""

    label = models.OneToOneField(DecisionLabel, on_delete=models.CASCADE, related_name="strike_settings")
    weight = models.PositiveSmallIntegerField(default=1)

    class Meta:
        verbose_name_plural = "label strikes"

    def __str__(self) -> str:
        return f"{self.label}: {self.weight}"


class ActionKind(models.TextChoices):
    WARN = "warn", "Warn"
    RESTRICT = "restrict", "Restrict"
    SUSPEND = "suspend", "Suspend"
    CUSTOM = "custom", "Custom action"


class StrikeThreshold(models.Model):
    """Reaching ``strikes`` active strikes in ``family`` triggers ``action`` once per crossing."""

    family = models.SlugField(max_length=100)
    strikes = models.PositiveSmallIntegerField()
    action = models.CharField(max_length=20, choices=ActionKind.choices)
    custom_action = models.SlugField(max_length=100, blank=True, help_text="The action's name, for 'custom'.")
    is_active = models.BooleanField(default=True)
    # A restriction or suspension it takes lasts this long and is then lifted (None: until a person reverses it).
    duration = models.DurationField(null=True, blank=True)

    class Meta:
        ordering = ["family", "strikes"]
        constraints = [
            models.UniqueConstraint(fields=["family", "strikes"], name="threshold_unique_family_strikes"),
            models.CheckConstraint(condition=Q(strikes__gte=1), name="threshold_strikes_positive"),
            models.CheckConstraint(condition=~Q(action="custom") | ~Q(custom_action=""), name="threshold_custom_named"),
        ]

    def __str__(self) -> str:
        return f"{self.family} at {self.strikes}: {self.action}"


class Strike(models.Model):
    """Strikes one final violating decision added to its author's account; counted while not removed and not
    expired."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="strikes", db_index=False)
    decision = models.OneToOneField("queues.Decision", on_delete=models.PROTECT, related_name="strike")
    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="+")
    family = models.SlugField(max_length=100)
    weight = models.PositiveSmallIntegerField()
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["account", "family", "expires_at"], name="strike_account_idx"),
            # The account page's strikes, newest first: without it PostgreSQL walked every strike by issue time
            # looking for the account's (strike_issued_idx), work that grows with the table, not the account.
            models.Index(fields=["account", "issued_at"], name="strike_account_issued_idx"),
            models.Index(fields=["issued_at"], name="strike_issued_idx"),
            models.Index(fields=["expires_at"], name="strike_expires_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.weight} strike(s) on {self.account_id} for decision {self.decision_id}"


class ActionState(models.TextChoices):
    PENDING = "pending_approval", "Waiting for a second person's approval"
    IN_FORCE = "in_force", "In force"
    REJECTED = "rejected", "Rejected by the approver"
    REVERSED = "reversed", "Reversed"
    EXPIRED = "expired", "Lifted when its duration ended"


class ActionOrigin(models.TextChoices):
    THRESHOLD = "threshold", "A strike threshold"
    REVIEWER = "reviewer", "A reviewer, from an item"
    BULK = "bulk", "A bulk account action"


class AccountAction(models.Model):
    """Something done to an account (warn, restrict, suspend, a custom action), sent to the integrating service
    as an ``account.action`` webhook when it takes effect and again when it is reversed."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="actions", db_index=False)
    kind = models.CharField(max_length=20, choices=ActionKind.choices)
    custom_action = models.SlugField(max_length=100, blank=True)
    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    family = models.SlugField(max_length=100, blank=True)
    threshold = models.ForeignKey(
        StrikeThreshold, null=True, blank=True, on_delete=models.PROTECT, related_name="actions"
    )
    origin = models.CharField(max_length=20, choices=ActionOrigin.choices)
    reason = models.TextField()
    # The decisions behind it (ids of queues.Decision): the strikes in force when a threshold fired, or the
    # decision of the item a reviewer acted from.
    decision_ids = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=20, choices=ActionState.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField()
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    effective_at = models.DateTimeField(null=True, blank=True)
    reversed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reversed_at = models.DateTimeField(null=True, blank=True)
    reversal_reason = models.TextField(blank=True)
    batch_id = models.UUIDField(null=True, blank=True)
    # A restriction or suspension for a time: how long from taking effect (None: until reversed), and when it is
    # lifted (set as it takes effect); the periodic ``account_actions_expire`` lifts it then.
    duration = models.DurationField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["account", "requested_at"], name="accountaction_account_idx"),
            models.Index(
                fields=["expires_at"],
                condition=Q(state="in_force", expires_at__isnull=False),
                name="accountaction_expiring_idx",
            ),
            models.Index(fields=["requested_at"], name="accountaction_at_idx"),
            models.Index(fields=["state"], condition=Q(state="pending_approval"), name="accountaction_pending_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on account {self.account_id} ({self.state})"

    @property
    def name(self) -> str:
        return self.custom_action if self.kind == ActionKind.CUSTOM else self.kind


class AccountLabel(models.Model):
    """A label on an account (trusted-flagger, new-account, under-investigation …), optionally until a time.
    Removing one keeps the row (who, when); at most one label of a name is not removed at a time."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="labels", db_index=False)
    label = models.SlugField(max_length=100)
    set_at = models.DateTimeField()
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    set_by_label = models.CharField(max_length=200)
    reason = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "label"], condition=Q(removed_at__isnull=True), name="accountlabel_one_current"
            )
        ]
        indexes = [models.Index(fields=["account", "label"], name="accountlabel_account_idx")]

    def __str__(self) -> str:
        return f"{self.label} on {self.account_id}"


class AccountReport(models.Model):
    """A user report (an item) about an account, and the account that filed it when the service says."""

    item = models.OneToOneField("queues.ReviewItem", on_delete=models.CASCADE, related_name="account_report")
    subject = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.PROTECT, related_name="reports_received"
    )
    reporter = models.ForeignKey(Account, null=True, blank=True, on_delete=models.PROTECT, related_name="reports_filed")
    about_account = models.BooleanField(default=False, help_text="The report is about the account itself.")

    def __str__(self) -> str:
        return f"report {self.item_id}"


class AccountEvent(models.Model):
    """The account's history: created, strikes added and removed, actions, labels. Never content."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="events", db_index=False)
    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=200)
    event = models.CharField(max_length=50)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["account", "at"], name="accountevent_account_idx")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.event}"
