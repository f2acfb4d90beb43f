"""Review items, queues, the item state machine, item history and decisions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models
from django.db.models import Q

from ops_platform.core.errors import ApplicationError
from ops_platform.core.fields import NulSafeJSONField, NulSafeTextField
from ops_platform.core.models import (
    DecisionLabel,
    EnforcementAction,
    Policy,
    ReviewerProfile,
    Skill,
    Team,
    Vendor,
)


class QueueOrdering(models.TextChoices):
    PRIORITY_THEN_DUE = "priority_due", "Highest priority first, then earliest due"
    DUE_FIRST = "due", "Earliest due first"
    OLDEST_FIRST = "fifo", "Oldest received first"


class ExposureCategory(models.Model):
    """A kind of distressing content (graphic violence, self-harm …) that ops managers cap per reviewer per
    day: after the cap, claim-next in its queues refuses and offers the reviewer's other queues."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    daily_cap = models.PositiveIntegerField(default=40, help_text="Items one reviewer may open per day.")

    class Meta:
        ordering = ["slug"]
        verbose_name_plural = "exposure categories"

    def __str__(self) -> str:
        return self.name


# Independent reviews an item may need: each queue sets its own ceiling up to this sanity bound (issue 22: the
# fixed ceiling of 5 kept N-review queues from asking as many reviewers as a crowd-labelled set has).
MAX_REQUIRED_REVIEWS = 25
DEFAULT_MAX_REQUIRED_REVIEWS = 5


class Queue(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    policies = models.ManyToManyField(Policy, blank=True, related_name="queues")
    required_skills = models.ManyToManyField(Skill, blank=True, related_name="queues")
    sla = models.DurationField(default=timedelta(hours=24), help_text="Target time from receipt to decision.")
    ordering = models.CharField(max_length=20, choices=QueueOrdering.choices, default=QueueOrdering.PRIORITY_THEN_DUE)
    escalation_target = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="escalations_from"
    )
    allowed_teams = models.ManyToManyField(Team, blank=True, related_name="queues")
    allowed_vendors = models.ManyToManyField(Vendor, blank=True, related_name="queues")
    is_sensitive = models.BooleanField(default=False, help_text="Distressing content: shown as such to reviewers.")
    exposure_category = models.ForeignKey(
        ExposureCategory,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="queues",
        help_text="Whose daily cap counts the items opened here.",
    )
    is_restricted = models.BooleanField(default=False, help_text="Only reviewers holding every required skill.")
    requires_rationale = models.BooleanField(default=False)
    # db_default too: rows written by code that predates the column (an older migration's state) still get it.
    max_required_reviews = models.PositiveSmallIntegerField(
        default=DEFAULT_MAX_REQUIRED_REVIEWS,
        db_default=DEFAULT_MAX_REQUIRED_REVIEWS,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_REQUIRED_REVIEWS)],
        help_text="The most independent reviews a routing rule may require of this queue's items.",
    )
    # Where triage puts an item when nothing more specific applies; at most one queue is the default.
    is_default_intake = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default_intake"],
                condition=Q(is_default_intake=True),
                name="one_default_intake_queue",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def may_be_worked_by(self, profile: ReviewerProfile | None) -> bool:
        """Team/vendor allow-lists and required skills; empty allow-lists mean in-house teams only."""
        return profile is not None and self.admits(profile.user_id)

    def admits(self, user_id: int) -> bool:
        """``may_be_worked_by`` for a user's reviewer profile, asked in one query without loading the profile
        (the claim asks it every time, so it is SQL: the ORM spends milliseconds building this one)."""
        with connection.cursor() as cursor:
            cursor.execute(_ADMITS_SQL, {"queue": self.pk, "user": user_id})
            row = cursor.fetchone()
        return bool(row and row[0])


# Queue.admits: a profile with a team; the team or its vendor on an allow-list, or, with no allow-lists, an
# in-house team; and no required skill the profile lacks.
_ADMITS_SQL = """
SELECT EXISTS (
    SELECT 1 FROM core_reviewerprofile AS profile JOIN core_team AS team ON team.id = profile.team_id
    WHERE profile.user_id = %(user)s
      AND (
          team.id IN (SELECT team_id FROM queues_queue_allowed_teams WHERE queue_id = %(queue)s)
          OR team.vendor_id IN (SELECT vendor_id FROM queues_queue_allowed_vendors WHERE queue_id = %(queue)s)
          OR (
              team.vendor_id IS NULL
              AND NOT EXISTS (SELECT 1 FROM queues_queue_allowed_teams WHERE queue_id = %(queue)s)
              AND NOT EXISTS (SELECT 1 FROM queues_queue_allowed_vendors WHERE queue_id = %(queue)s)
          )
      )
      AND NOT EXISTS (
          SELECT 1 FROM queues_queue_required_skills AS required
          WHERE required.queue_id = %(queue)s AND NOT EXISTS (
              SELECT 1 FROM core_reviewerprofile_skills AS held
              WHERE held.reviewerprofile_id = profile.id AND held.skill_id = required.skill_id
          )
      )
)
"""


class ItemKind(models.TextChoices):
    CONTENT = "content", "Content"
    USER_REPORT = "user_report", "User report"
    APPEAL = "appeal", "Appeal"


class ItemState(models.TextChoices):
    RECEIVED = "received", "Received, awaiting triage"
    QUEUED = "queued", "Queued for review"
    CLAIMED = "claimed", "Claimed by a reviewer"
    DECIDED = "decided", "Decided"
    AUTO_ACTIONED = "auto_actioned", "Closed by a rule"


# Every legal move of the state machine. Anything else raises IllegalTransition.
TRANSITIONS: dict[str, frozenset[str]] = {
    ItemState.RECEIVED: frozenset({ItemState.QUEUED, ItemState.AUTO_ACTIONED}),
    # queued -> queued: moved to another queue (escalation, re-routing).
    # queued -> decided: a senior reviewer's bulk decision, which claims nothing.
    ItemState.QUEUED: frozenset({ItemState.QUEUED, ItemState.CLAIMED, ItemState.DECIDED}),
    # claimed -> queued: released, lease expired, escalated, or waiting for a further independent review.
    ItemState.CLAIMED: frozenset({ItemState.QUEUED, ItemState.DECIDED}),
    # A decided item reopens only for a correction or an appeal outcome that needs a new review.
    ItemState.DECIDED: frozenset({ItemState.QUEUED}),
    ItemState.AUTO_ACTIONED: frozenset({ItemState.QUEUED}),
}


class IllegalTransition(ApplicationError):
    status_code = 409
    code = "illegal_transition"

    def __init__(self, item_id: int | None, current: str, target: str):
        super().__init__(f"Item {item_id} cannot go from '{current}' to '{target}'.", field="state")
        self.current = current
        self.target = target


def check_transition(current: str, target: str, *, item_id: int | None = None) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(item_id, current, target)


# The full-text form of an item's text: the 'simple' configuration (lower-cased words, no stemming, no stop words)
# because items come in every language and a language's stemmer would mangle the others.
TEXT_SEARCH_CONFIG = "simple"


class ContentPurgeReason(models.TextChoices):
    RETENTION = "retention", "Retention period over"
    ERASURE = "erasure", "Erased on request"


class ReviewItem(models.Model):
    """One thing to review: a piece of content, a user report about one, or an appeal of a decision."""

    # No index of its own: (source, external_id) and (source, author_ref) lead with it.
    source = models.SlugField(max_length=100, db_index=False)
    external_id = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=ItemKind.choices, default=ItemKind.CONTENT)
    # Content is kept exactly as sent, U+0000 included (PostgreSQL cannot store it as is).
    text = NulSafeTextField(blank=True)
    media_urls = models.JSONField(default=list, blank=True)
    author_ref = models.CharField(max_length=200, blank=True)
    surface = models.CharField(max_length=100, blank=True)
    language = models.CharField(max_length=16, blank=True)
    metadata = NulSafeJSONField(default=dict, blank=True)
    report_reasons = NulSafeJSONField(default=list, blank=True)
    report_count = models.PositiveIntegerField(default=0)
    # A copy of a QA golden item with a known answer: worked like any other item (reviewers cannot tell),
    # never sent to a client, and left out of operational figures.
    is_golden = models.BooleanField(default=False)
    # For an appeal: the decided item it contests.
    appeal_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="appeals", db_index=False
    )

    state = models.CharField(max_length=20, choices=ItemState.choices, default=ItemState.RECEIVED)
    # Indexed by item_queue_work_idx, which leads with it.
    queue = models.ForeignKey(
        Queue, null=True, blank=True, on_delete=models.PROTECT, related_name="items", db_index=False
    )
    priority = models.SmallIntegerField(default=0, help_text="Higher is reviewed sooner.")
    # Set by routing rules: labels for reviewers and filters, and how many independent reviews close the item.
    tags = models.JSONField(default=list, blank=True)
    required_reviews = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_REQUIRED_REVIEWS)]
    )
    due_at = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="claimed_items",
        db_index=False,
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Escalated to a named colleague: only they may claim it until they release it or the reservation runs out
    # (``reserved_until``, which means nothing without ``reserved_for``), when it goes back to everyone.
    reserved_for = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reserved_items",
        db_index=False,
    )
    reserved_until = models.DateTimeField(null=True, blank=True)

    # This server's clock when intake stored the item: queue order, due times and SLA follow it.
    received_at = models.DateTimeField()
    # When the content was created, as the client says (bounded at intake); information only, never an order.
    created_at = models.DateTimeField(null=True, blank=True)
    triaged_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    # Set by the sweeper when it re-sends an item to triage, so it waits before sending it again.
    triage_requested_at = models.DateTimeField(null=True, blank=True)
    # When its content (text, media, metadata, report reasons) was emptied, by the retention purge or an erasure
    # (docs/retention.md); the row, its decisions and its times stay for the figures.
    content_purged_at = models.DateTimeField(null=True, blank=True)
    content_purge_reason = models.CharField(max_length=20, choices=ContentPurgeReason.choices, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "external_id"], name="item_unique_external_id")]
        indexes = [
            # The sweeper's scan: only un-triaged rows, which are few.
            models.Index(fields=["received_at"], condition=Q(state="received"), name="item_untriaged_idx"),
            # Claim-next in each queue ordering: the index is the ORDER BY (with the id tie-break), so the
            # claim walks it and stops at the first row it can lock instead of sorting the whole queue.
            models.Index(fields=["queue", "state", "-priority", "due_at", "id"], name="item_queue_work_idx"),
            models.Index(fields=["queue", "due_at", "id"], condition=Q(state="queued"), name="item_queue_due_idx"),
            models.Index(
                fields=["queue", "received_at", "id"], condition=Q(state="queued"), name="item_queue_fifo_idx"
            ),
            # Items by receipt (the dashboards' periods, the drill-down's keyset pages); is_golden rides along so
            # that counting a period's operational items (golden left out) reads the index alone.
            models.Index(fields=["received_at", "is_golden"], name="item_received_op_idx"),
            # Items by decision time (the drill-down's ``on=decided`` periods and keyset pages), only those decided.
            models.Index(
                fields=["decided_at", "is_golden"], condition=Q(decided_at__isnull=False), name="item_decided_op_idx"
            ),
            # The backlog: open operational items by queue, age and due time, counted from the index alone (the
            # backlog panel and its 15-minute snapshot) instead of reading every item.
            models.Index(
                fields=["queue", "received_at", "due_at"],
                condition=Q(state__in=["queued", "claimed"], is_golden=False),
                name="item_backlog_idx",
            ),
            # Items that need several independent reviews (few): QA's multi-rater figures start from them.
            models.Index(fields=["id"], condition=Q(required_reviews__gt=1), name="item_multi_review_idx"),
            # The lease sweep: only claimed rows.
            models.Index(fields=["lease_expires_at"], condition=Q(state="claimed"), name="item_lease_idx"),
            # Author history at triage counts each batch's authors' auto-actioned items: without it the count
            # reads every item of those authors (a prolific author's thousands) for each batch of 500.
            # author_ref leads in both: triage asks for ``author_ref IN (a batch's authors)``, and PostgreSQL
            # (before 17) uses an IN list on a second column only as a filter, reading the whole source.
            models.Index(
                fields=["author_ref", "source"], condition=Q(state="auto_actioned"), name="item_auto_by_author_idx"
            ),
            # An author's items and decisions (the item page's history, author history at triage, the account page
            # and the account-scoped search). The id makes it the order of "the author's newest items": the account
            # page and a search by author walk it from the newest down and stop at a page, instead of reading every
            # item of a prolific author to sort them (docs/accounts.md, "The account page at scale").
            models.Index(fields=["author_ref", "source", "id"], name="item_author_id_idx"),
            # Foreign keys that most rows leave empty are indexed only where set: every index on this table is
            # written at intake and again when triage moves the item (that UPDATE changes indexed columns, so
            # it is never HOT; docs/performance.md). ``= value`` lookups use these partial indexes.
            models.Index(fields=["appeal_of"], condition=Q(appeal_of__isnull=False), name="item_appeal_of_idx"),
            models.Index(fields=["assignee"], condition=Q(assignee__isnull=False), name="item_assignee_idx"),
            models.Index(
                fields=["reserved_for"], condition=Q(reserved_for__isnull=False), name="item_reserved_for_idx"
            ),
            # The retention purge's scan: decided items whose content is still held, oldest decision first.
            models.Index(
                fields=["decided_at"],
                condition=Q(content_purged_at__isnull=True, state__in=["decided", "auto_actioned"]),
                name="item_purge_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source}/{self.external_id}"

    def transition_to(self, target: str) -> None:
        """Check and apply a state change in memory; services save it (usually with a conditional update)."""
        check_transition(self.state, target, item_id=self.pk)
        self.state = target

    @staticmethod
    def due_for(queue: Queue, received_at: Any) -> Any:
        return received_at + queue.sla


class ItemSearchText(models.Model):
    """An item's text as a full-text vector for investigation's search (PostgreSQL only; SQLite searches the text
    by substring). Kept by triggers (queues/migrations/0028_item_search_text.py): written when the item is stored,
    rewritten when its text changes, gone when its content is purged or erased (the text becomes '').

    Apart from the items table because every UPDATE that moves an item (triage, claim, decision) is non-HOT: an
    index on the items' text there recomputed ``to_tsvector`` and added a GIN entry at each one (docs/performance.md).
    """

    # No database foreign key: its check would lock each new item's row (FOR KEY SHARE) at intake; the trigger writes
    # rows only for items just stored, and deleting an item through the ORM deletes its vector.
    item = models.OneToOneField(
        ReviewItem, on_delete=models.CASCADE, primary_key=True, related_name="search_text", db_constraint=False
    )
    vector = SearchVectorField()

    class Meta:
        indexes = [GinIndex(fields=["vector"], name="item_search_vector_idx")]

    def __str__(self) -> str:
        return f"search vector of item {self.item_id}"


class ItemEvent(models.Model):
    """The item's history: every state change and notable act, with who did it."""

    # item and actor are indexed by the (item, at) and (actor, at) indexes below, which lead with them.
    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="events", db_index=False)
    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    actor_label = models.CharField(max_length=200)
    event = models.CharField(max_length=50)
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20, blank=True)
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["item", "at"]),
            # A reviewer's own recent acts: exposure counts and the break reminder.
            models.Index(fields=["actor", "at"], name="itemevent_actor_at_idx"),
            # A day's events: the analytics rollups recompute by day.
            models.Index(fields=["at"], name="itemevent_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.item_id} {self.event} {self.from_state}->{self.to_state}"


class ItemSkip(models.Model):
    """A reviewer skipped this item: claim-next gives it to others first until ``until``."""

    # The unique (item, reviewer) index is what claim-next probes for each candidate row.
    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="+", db_index=False)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    until = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "reviewer"], name="itemskip_unique_item_reviewer")]
        # The lease sweep deletes the ones that ran out.
        indexes = [models.Index(fields=["until"], name="itemskip_until_idx")]

    def __str__(self) -> str:
        return f"item {self.item_id} skipped by {self.reviewer_id} until {self.until:%Y-%m-%d %H:%M}"


class AppealOutcome(models.TextChoices):
    UPHELD = "upheld", "Upheld: the original decision stands"
    OVERTURNED = "overturned", "Overturned: the original decision was wrong"


def reviewer_vendors(user_ids: Iterable[int]) -> dict[int, int | None]:
    """Each reviewer's vendor now (None: in-house or no team)."""
    return dict(ReviewerProfile.objects.filter(user_id__in=set(user_ids)).values_list("user_id", "team__vendor_id"))


class DecisionManager(models.Manager["Decision"]):
    def bulk_create(self, objs: Iterable[Decision], *args: Any, **kwargs: Any) -> list[Decision]:
        """As Django's, each decision taking its reviewer's vendor as :meth:`Decision.save` does."""
        objs = list(objs)
        vendors = reviewer_vendors(d.reviewer_id for d in objs if d.vendor_id is None)
        for decision in objs:
            if decision.vendor_id is None:
                decision.vendor_id = vendors.get(decision.reviewer_id)
        return super().bulk_create(objs, *args, **kwargs)


class Decision(models.Model):
    """A reviewer's decision on an item. Immutable: a correction is a new decision that supersedes."""

    item = models.ForeignKey(ReviewItem, on_delete=models.PROTECT, related_name="decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    # The reviewer's vendor when they decided (null: in-house), taken as the decision is stored: vendor figures
    # and cost follow the decision, not the reviewer's later moves between teams.
    vendor = models.ForeignKey(
        Vendor, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.PROTECT, related_name="decisions")
    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.PROTECT, related_name="decisions")
    labels: models.ManyToManyField[DecisionLabel, DecisionLabelLink] = models.ManyToManyField(
        DecisionLabel, blank=True, related_name="decisions", through="DecisionLabelLink"
    )
    action = models.ForeignKey(
        EnforcementAction, null=True, blank=True, on_delete=models.PROTECT, related_name="decisions"
    )
    is_violation = models.BooleanField()
    rationale = models.TextField(blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField()
    handle_time = models.DurationField(null=True, blank=True)
    is_final = models.BooleanField(default=True)
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    # On a decision about an appeal item: what became of the contested decision.
    appeal_outcome = models.CharField(max_length=20, choices=AppealOutcome.choices, blank=True)
    # Set on every decision of one bulk decision; the audit log holds the batch under the same id.
    batch_id = models.UUIDField(null=True, blank=True, db_index=True)
    # A bulk decision taken back: this row supersedes the batch's decision and decides nothing itself (not final,
    # no verdict); the item went back to its queue for a person to decide.
    is_reversal = models.BooleanField(default=False)

    objects = DecisionManager()

    class Meta:
        indexes = [
            models.Index(fields=["decided_at"]),
            models.Index(fields=["reviewer", "decided_at"]),
            # Claim-next's "not an item you decided" probe, one lookup per candidate whatever the planner knows: without
            # statistics PostgreSQL ANDed the reviewer index in, reading every decision of theirs per candidate
            # (56 ms a claim at 10,000 own decisions, bench/qa.py).
            models.Index(fields=["item", "reviewer"], name="decision_item_reviewer_idx"),
        ]

    def __str__(self) -> str:
        return f"decision {self.pk} on item {self.item_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ApplicationError("Decisions are immutable; record a new decision that supersedes this one.")
        if self.vendor_id is None:
            self.vendor_id = reviewer_vendors([self.reviewer_id]).get(self.reviewer_id)
        super().save(*args, **kwargs)


class DecisionLabelLink(models.Model):
    """A label a decision carries. The table Django made for ``Decision.labels``, declared to protect the label:
    deleting a label some decision carries would silently strip it from that decision (retire it instead)."""

    decision = models.ForeignKey(Decision, on_delete=models.CASCADE, related_name="+")
    decisionlabel = models.ForeignKey(DecisionLabel, on_delete=models.PROTECT, related_name="+")

    class Meta:
        db_table = "queues_decision_labels"
        unique_together = [("decision", "decisionlabel")]

    def __str__(self) -> str:
        return f"label {self.decisionlabel_id} on decision {self.decision_id}"


class GroundTruthOrigin(models.TextChoices):
    QA_VERIFIED = "qa_verified", "QA re-review agreed with the decision"
    ADJUDICATED = "adjudicated", "Set by a QA lead in adjudication"
    IMPORTED = "imported", "Imported by QA from a labelling made elsewhere (provenance in qa.ImportedLabel)"


class GroundTruth(models.Model):
    """A label people have verified: the only human labels a locally trained classifier may learn from.

    Written by QA (blind re-review that agreed, adjudication, or an import of labels made elsewhere); read by
    classifier training and analytics. A later record for the same item supersedes an earlier one.
    """

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="ground_truth")
    decision = models.ForeignKey(Decision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    origin = models.CharField(max_length=20, choices=GroundTruthOrigin.choices)
    is_violation = models.BooleanField()
    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    recorded_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["item", "-recorded_at"])]

    def __str__(self) -> str:
        return f"{self.origin} on item {self.item_id}"


# The account side (docs/accounts.md), gathered here for Django: its models name the ones above by string.
from queues.accounts.models import (  # noqa: E402, F401
    Account,
    AccountAction,
    AccountEvent,
    AccountLabel,
    AccountReport,
    LabelStrikes,
    PolicyStrikes,
    Strike,
    StrikeThreshold,
)
from queues.retention.models import Erasure, LegalHold  # noqa: E402, F401
