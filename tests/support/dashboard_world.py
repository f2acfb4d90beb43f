"""A world of decided items for the dashboards, generated as frames of rows: the items with their decision,
'claimed'/'decided'/'escalated' events, one local classifier score, QA samples closed with a blind re-review and
ground truth, appeals (some overturned), items closed by a rule and the still-open ones as the backlog.

bench/dashboard.py COPYs millions of these rows in to time the panels; tests/analytics/test_panels_against_raw.py
inserts a few thousand through the ORM and checks every panel against raw rows. Frames are keyed by model, their
columns named by field (``queue_id``), and the ids are the generator's own, so rows point at each other without a
read. Django must be set up before anything here runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

# slug, name, SLA hours, share of decisions, median queue wait (hours), vendors may work it, policies
QUEUES: list[tuple[str, str, int, float, float, bool, list[str]]] = [
    ("general", "General intake", 24, 0.50, 3.0, True, ["spam", "harassment", "hateful-conduct", "violent-threats"]),
    ("hate-harassment", "Hate & harassment", 12, 0.18, 2.0, False, ["hateful-conduct", "harassment"]),
    ("self-harm", "Self-harm", 4, 0.05, 0.5, False, ["self-harm"]),
    ("fraud-spam", "Fraud & spam", 48, 0.22, 10.0, True, ["fraud-scams", "spam"]),
    ("tier-2", "Tier-2 escalations", 8, 0.05, 2.0, False, ["violent-threats", "hateful-conduct", "child-safety"]),
]
APPEALS_QUEUE = ("appeals", "Appeals", 72)
POLICIES: list[tuple[str, str, list[str]]] = [
    ("hateful-conduct", "Hateful conduct", ["hate"]),
    ("violent-threats", "Violent threats", ["violence", "hate/threatening"]),
    ("harassment", "Harassment", ["harassment"]),
    ("self-harm", "Self-harm", ["self-harm"]),
    ("child-safety", "Child safety", ["sexual/minors"]),
    ("fraud-scams", "Fraud & scams", []),
    ("spam", "Spam", []),
]
SCORED = ["hate", "harassment", "violence", "self-harm"]  # categories the local model scores
CATEGORY = "hate"  # the classifier panels' slice
VENDORS = [
    ("meridian", "Meridian Review Services", "0.9500", "0.9200", "0.0850"),
    ("kestrel", "Kestrel Moderation", "0.9000", "0.8800", "0.0550"),
]
REVIEWERS_PER_TEAM = 20
SOURCES = ["web", "ios", "android", "partner-api"]
SURFACES = ["post", "comment", "profile", "message", "listing"]
PRIORITIES = np.array([0, 10, 50, 100])
SHARES = {"auto": 0.12, "violation": 0.3, "bulk": 0.02, "escalated": 0.03, "appeal": 0.005, "qa": 0.01}


def fields(text: str) -> list[str]:
    return text.split()


ITEM = fields(
    "id source external_id kind text media_urls author_ref surface language metadata report_reasons report_count "
    "is_golden state queue_id priority tags required_reviews received_at triaged_at queued_at claimed_at decided_at "
    "due_at appeal_of_id"
)
DECISION = fields(
    "id item_id reviewer_id queue_id policy_id action_id is_violation rationale claimed_at decided_at handle_time "
    "is_final appeal_outcome vendor_id is_reversal"
)
EVENT = fields("id item_id at actor_id actor_label event from_state to_state queue_id data")
SCORE = fields("id item_id backend model model_version prompt_version scores detail created_at")
SAMPLE = fields(
    "id item_id decision_id reason inclusion_probability sampled_at original_is_violation original_policy_id "
    "original_action_id original_reviewer_id original_vendor_id original_queue_id original_decided_at state agreed "
    "error_type severity closed_at"
)
REVIEW = fields("sample_id reviewer_id is_violation policy_id action_id rationale decided_at agrees")
TRUTH = fields("item_id decision_id origin is_violation policy_id recorded_by_id recorded_at")


def models() -> dict[Any, list[str]]:
    """The models the world fills, in an order that inserts what a row points at first, with their fields."""
    from qa.models import QaReview, QaSample
    from queues.models import Decision, GroundTruth, ItemEvent, ReviewItem
    from routing.models import ClassifierScore

    return {
        ReviewItem: ITEM,
        Decision: DECISION,
        ItemEvent: EVENT,
        ClassifierScore: SCORE,
        QaSample: SAMPLE,
        QaReview: REVIEW,
        GroundTruth: TRUTH,
    }


@dataclass
class World:
    queues: dict[str, int]  # slug -> id
    queue_sla: dict[int, float]  # id -> SLA seconds
    policies: dict[str, int]
    actions: dict[str, int]
    vendors: dict[str, int]
    reviewers: list[int]  # user ids; the first REVIEWERS_PER_TEAM are in-house
    reviewer_vendor: dict[int, int | None]
    qa_lead: int


def world_create() -> World:
    """6 queues, 7 policies with classifier categories, 2 vendors and an in-house team with 60 reviewers."""
    from ops_platform.core.models import EnforcementAction, Policy, ReviewerProfile, Team, User, Vendor
    from queues.models import Queue

    actions = {
        slug: EnforcementAction.objects.create(slug=slug, name=slug, strength=n).pk
        for n, slug in enumerate(["no-action", "warn", "remove", "suspend"])
    }
    policies = {
        slug: Policy.objects.create(slug=slug, name=name, guidelines="-", classifier_categories=categories).pk
        for slug, name, categories in POLICIES
    }
    queues, sla = {}, {}
    for slug, name, hours, *_ in [*QUEUES, APPEALS_QUEUE]:
        q = Queue.objects.create(slug=slug, name=name, sla=timedelta(hours=hours))
        queues[slug], sla[q.pk] = q.pk, hours * 3600.0
    vendors = {
        slug: Vendor.objects.create(
            slug=slug, name=name, target_sla_attainment=s, target_quality_score=qs, cost_per_decision=cost
        ).pk
        for slug, name, s, qs, cost in VENDORS
    }
    reviewers: list[int] = []
    reviewer_vendor: dict[int, int | None] = {}
    for team_slug, vendor_slug in [("in-house", None), ("meridian-manila", "meridian"), ("kestrel-bogota", "kestrel")]:
        vendor_id = vendors[vendor_slug] if vendor_slug else None
        team = Team.objects.create(slug=team_slug, name=team_slug, vendor_id=vendor_id)
        for n in range(REVIEWERS_PER_TEAM):
            user = User.objects.create(username=f"{team_slug}-{n:02d}")
            ReviewerProfile.objects.create(user=user, team=team)
            reviewers.append(user.pk)
            reviewer_vendor[user.pk] = vendor_id
    qa_lead = User.objects.create(username="qa.lead").pk
    ReviewerProfile.objects.create(user_id=qa_lead, team=Team.objects.get(slug="in-house"))
    return World(queues, sla, policies, actions, vendors, reviewers, reviewer_vendor, qa_lead)


@dataclass
class Ids:
    """The next id of each table's rows that carry one: the generator assigns ids itself."""

    next: dict[str, int] = field(default_factory=dict)

    def take(self, kind: str, n: int) -> np.ndarray:
        first = self.next.get(kind, 1)
        self.next[kind] = first + n
        return np.arange(first, first + n, dtype=np.int64)


def _ts(base: datetime, seconds: np.ndarray) -> pd.Series:
    """Timestamps ``base + seconds`` (NaN stays missing)."""
    return pd.Series(pd.Timestamp(base) + pd.to_timedelta(seconds, unit="s"))


def _lognormal(rng: np.random.Generator, median: np.ndarray | float, sigma: float, n: int) -> np.ndarray:
    return np.exp(np.log(median) + sigma * rng.standard_normal(n))


def _none(n: int) -> Any:
    return pd.array([None] * n, dtype="Int64")


def _scores_json(rng: np.random.Generator, positive: np.ndarray) -> pd.Series:
    """The local model's scores: each category high (beta(5, 2)) where the item violates a policy mapped to it,
    low (beta(1, 8)) elsewhere, rounded to 4 decimals so the JSON is short."""
    text = pd.Series("{", index=range(len(positive)))
    for n, category in enumerate(SCORED):
        hit = positive[:, n]
        p = np.where(hit, rng.beta(5, 2, len(hit)), rng.beta(1, 8, len(hit))).round(4)
        text = text + ("" if n == 0 else ", ") + f'"{category}": ' + pd.Series(p).astype(str)
    return text + "}"


def _items(ids: np.ndarray, **columns: Any) -> pd.DataFrame:
    """Item rows: ``columns`` over the defaults every generated item shares."""
    n = len(ids)
    defaults: dict[str, Any] = {
        "kind": "content",
        "text": "",
        "media_urls": "[]",
        "author_ref": "",
        "surface": "post",
        "language": "en",
        "metadata": "{}",
        "report_reasons": "[]",
        "report_count": 0,
        "is_golden": False,
        "priority": 0,
        "tags": "[]",
        "required_reviews": 1,
        "appeal_of_id": _none(n),
    }
    return pd.DataFrame({"id": ids, **defaults, **columns})


def _events(ids: Ids, items: np.ndarray, at: pd.Series, **columns: Any) -> pd.DataFrame:
    n = len(items)
    base = {"id": ids.take("event", n), "item_id": items, "at": at, "actor_id": _none(n), "queue_id": _none(n)}
    return pd.DataFrame({**base, "from_state": "", "to_state": "", "data": "{}", **columns})


@dataclass
class Chunk:
    frames: dict[str, pd.DataFrame]  # by kind: item, decision, event, score, sample, review, truth
    decisions: int


def chunk_generate(
    rng: np.random.Generator, n: int, w: World, ids: Ids, now: datetime, *, days: int, shares: dict[str, float]
) -> Chunk:
    """``n`` items received over ``days`` before ``now`` and (mostly) decided, with what hangs off them; a share
    of extra items closed by a rule; appeals of a share of the decided ones. Items whose decision would fall after
    ``now`` stay open (queued, or claimed when the claim is past): the backlog."""
    start = now - timedelta(days=days)
    span = (now - start).total_seconds()
    q_idx = rng.choice(len(QUEUES), n, p=[q[3] for q in QUEUES])
    queue_id = np.array([w.queues[q[0]] for q in QUEUES])[q_idx]
    sla = np.array([w.queue_sla[w.queues[q[0]]] for q in QUEUES])[q_idx]
    wait_median = np.array([q[4] for q in QUEUES])[q_idx] * 3600
    received = rng.uniform(0, span, n)
    wait = _lognormal(rng, wait_median, 1.1, n)
    handle = _lognormal(rng, 75.0, 0.7, n) + 2
    bulk = rng.random(n) < shares["bulk"]
    claimed = received + wait
    decided = claimed + handle
    open_ = decided >= span
    claimed_open = open_ & (claimed < span)
    # Reviewers: vendor teams work only the queues open to vendors; the rest are in-house.
    vendor_ok = np.array([q[5] for q in QUEUES])[q_idx]
    house = REVIEWERS_PER_TEAM
    r_idx = np.where(vendor_ok, rng.integers(0, len(w.reviewers), n), rng.integers(0, house, n))
    reviewer = np.array(w.reviewers)[r_idx]
    violation = rng.random(n) < shares["violation"]
    q_policies = [[w.policies[p] for p in q[6]] for q in QUEUES]
    pick = rng.integers(0, 1 << 30, n)
    policy = np.array([q_policies[q][k % len(q_policies[q])] for q, k in zip(q_idx, pick, strict=True)])
    policy = np.where(violation, policy, -1)
    positive = np.zeros((n, len(SCORED)), dtype=bool)
    for slug, _, cats in POLICIES:
        rows = policy == w.policies[slug]
        for c in cats:
            if c in SCORED:
                positive[rows, SCORED.index(c)] = True
    item_ids = ids.take("item", n)
    frames: dict[str, list[pd.DataFrame]] = {}

    def add(kind: str, frame: pd.DataFrame) -> None:
        frames.setdefault(kind, []).append(frame)

    claim_at = np.where(bulk, np.nan, claimed)
    add(
        "item",
        _items(
            item_ids,
            source=np.array(SOURCES)[rng.integers(0, len(SOURCES), n)],
            external_id=pd.Series(item_ids).astype(str).radd("b-"),
            kind=np.where(rng.random(n) < 0.2, "user_report", "content"),
            surface=np.array(SURFACES)[rng.integers(0, len(SURFACES), n)],
            state=np.where(open_, np.where(claimed_open & ~bulk, "claimed", "queued"), "decided"),
            queue_id=queue_id,
            priority=PRIORITIES[rng.choice(4, n, p=[0.8, 0.15, 0.04, 0.01])],
            received_at=_ts(start, received),
            triaged_at=_ts(start, received + 1),
            queued_at=_ts(start, received + 1),
            claimed_at=_ts(start, np.where(open_ & ~claimed_open, np.nan, claim_at)),
            decided_at=_ts(start, np.where(open_, np.nan, decided)),
            due_at=_ts(start, received + sla),
        ),
    )
    done = ~open_
    d_items, d_n = item_ids[done], int(done.sum())
    d_policy = pd.array(np.where(policy[done] < 0, 0, policy[done]), dtype="Int64")
    d_policy[policy[done] < 0] = pd.NA
    decision_frame = pd.DataFrame(
        {
            "id": ids.take("decision", d_n),
            "item_id": d_items,
            "reviewer_id": reviewer[done],
            "vendor_id": pd.Series(reviewer[done]).map(w.reviewer_vendor).astype("Int64").array,
            "queue_id": queue_id[done],
            "policy_id": d_policy,
            "action_id": np.where(violation[done], w.actions["remove"], w.actions["no-action"]),
            "is_violation": violation[done],
            "rationale": "",
            "claimed_at": _ts(start, claim_at[done]),
            "decided_at": _ts(start, decided[done]),
            "handle_time": np.where(bulk[done], np.nan, handle[done]).round(6),
            "is_final": True,
            "appeal_outcome": "",
            "is_reversal": False,
        }
    )
    add("decision", decision_frame)
    # Events: a claim and a decision per decided item (a bulk decision claims nothing), and an escalation.
    escalated = done & ~bulk & (rng.random(n) < shares["escalated"])
    for mask, event, at, frm, to in (
        (done & ~bulk, "claimed", claimed, "queued", "claimed"),
        (escalated, "escalated", claimed + handle / 2, "claimed", "queued"),
        (done, "decided", decided, "claimed", "decided"),
    ):
        add(
            "event",
            _events(
                ids,
                item_ids[mask],
                _ts(start, at[mask]),
                actor_id=reviewer[mask],
                actor_label="reviewer",
                event=event,
                from_state=frm,
                to_state=to,
                queue_id=queue_id[mask],
            ),
        )
    # Triage put every one of them in its queue a second after receipt: a 'queued' event by no one.
    add(
        "event",
        _events(
            ids,
            item_ids,
            _ts(start, received + 1),
            actor_label="triage",
            event="queued",
            from_state="triaged",
            to_state="queued",
            queue_id=queue_id,
        ),
    )
    # Items a rule closed: no queue, no decision, an auto_actioned event by no one.
    n_auto = int(n * shares["auto"])
    auto_ids = ids.take("item", n_auto)
    auto_received = rng.uniform(0, span, n_auto)
    nothing = _ts(start, np.full(n_auto, np.nan))
    add(
        "item",
        _items(
            auto_ids,
            source=np.array(SOURCES)[rng.integers(0, len(SOURCES), n_auto)],
            external_id=pd.Series(auto_ids).astype(str).radd("b-"),
            state="auto_actioned",
            queue_id=_none(n_auto),
            received_at=_ts(start, auto_received),
            triaged_at=_ts(start, auto_received + 1),
            queued_at=nothing,
            claimed_at=nothing,
            decided_at=nothing,
            due_at=nothing,
        ),
    )
    add(
        "event",
        _events(
            ids,
            auto_ids,
            _ts(start, auto_received + 1),
            actor_label="rule",
            event="auto_actioned",
            from_state="received",
            to_state="auto_actioned",
        ),
    )
    # Appeals of a share of decided items: received ~2 days after the decision, decided within the appeals SLA.
    appealed = np.flatnonzero(done & (rng.random(n) < shares["appeal"]))
    a_received = decided[appealed] + _lognormal(rng, 2 * 86400, 0.8, len(appealed))
    a_decided = a_received + _lognormal(rng, 20 * 3600, 0.8, len(appealed))
    keep = a_received < span
    appealed, a_received, a_decided = appealed[keep], a_received[keep], a_decided[keep]
    a_done = a_decided < span
    a_ids = ids.take("item", len(appealed))
    appeals_q = w.queues["appeals"]
    add(
        "item",
        _items(
            a_ids,
            source="appeals",
            external_id=pd.Series(a_ids).astype(str).radd("a-"),
            kind="appeal",
            state=np.where(a_done, "decided", "queued"),
            queue_id=appeals_q,
            received_at=_ts(start, a_received),
            triaged_at=_ts(start, a_received),
            queued_at=_ts(start, a_received),
            claimed_at=_ts(start, np.where(a_done, a_decided - 120, np.nan)),
            decided_at=_ts(start, np.where(a_done, a_decided, np.nan)),
            due_at=_ts(start, a_received + 72 * 3600),
            appeal_of_id=item_ids[appealed],
        ),
    )
    k = int(a_done.sum())
    overturned = rng.random(k) < 0.2
    a_reviewer = np.array(w.reviewers[:house])[rng.integers(0, house, k)]
    add(
        "decision",
        pd.DataFrame(
            {
                "id": ids.take("decision", k),
                "item_id": a_ids[a_done],
                "reviewer_id": a_reviewer,
                "queue_id": appeals_q,
                "policy_id": _none(k),
                "action_id": w.actions["no-action"],
                "is_violation": False,
                "rationale": "appeal reviewed",
                "claimed_at": _ts(start, a_decided[a_done] - 120),
                "decided_at": _ts(start, a_decided[a_done]),
                "handle_time": 120.0,
                "is_final": True,
                "appeal_outcome": np.where(overturned, "overturned", "upheld"),
                "vendor_id": _none(k),  # in-house reviewers
                "is_reversal": False,
            }
        ),
    )
    for event, at in (("claimed", a_decided[a_done] - 120), ("decided", a_decided[a_done])):
        add(
            "event",
            _events(
                ids,
                a_ids[a_done],
                _ts(start, at),
                actor_id=a_reviewer,
                actor_label="reviewer",
                event=event,
                queue_id=appeals_q,
            ),
        )
    # One local score per item (appeals are scored too; no truth counts them).
    all_items = np.concatenate([item_ids, auto_ids, a_ids])
    all_positive = np.concatenate([positive, np.zeros((n_auto + len(a_ids), len(SCORED)), dtype=bool)])
    all_received = np.concatenate([received, auto_received, a_received])
    m = len(all_items)
    add(
        "score",
        pd.DataFrame(
            {
                "id": ids.take("score", m),
                "item_id": all_items,
                "backend": "local",
                "model": "local",
                "model_version": "7",
                "prompt_version": "",
                "scores": _scores_json(rng, all_positive),
                "detail": "{}",
                "created_at": _ts(start, all_received + 1),
            }
        ),
    )
    # QA: a random sample of decisions, closed with a blind re-review (wrong 5% of the time) and ground truth.
    s_rows = rng.random(d_n) < shares["qa"]
    s_n = int(s_rows.sum())
    s_ids = ids.take("sample", s_n)
    s_dec = decision_frame[s_rows]
    s_decided = decided[done][s_rows]
    wrong = rng.random(s_n) < 0.05
    truth_violation = s_dec["is_violation"].to_numpy() ^ wrong
    truth_policy = s_dec["policy_id"].copy()
    truth_policy[~truth_violation] = pd.NA
    truth_policy[wrong & truth_violation] = w.policies["spam"]
    # Re-reviewed a day after the decision; a sample whose day has not passed by ``now`` is still waiting.
    done_by_now = s_decided + 86400 < span
    closed = _ts(start, s_decided + 86400).where(done_by_now)
    error_type = np.where(wrong, np.where(s_dec["is_violation"], "false_positive", "false_negative"), "")
    add(
        "sample",
        pd.DataFrame(
            {
                "id": s_ids,
                "item_id": s_dec["item_id"].to_numpy(),
                "decision_id": s_dec["id"].to_numpy(),
                "reason": "random",
                "inclusion_probability": shares["qa"],
                "sampled_at": _ts(start, s_decided + 60),
                "original_is_violation": s_dec["is_violation"].to_numpy(),
                "original_policy_id": s_dec["policy_id"].array,
                "original_action_id": s_dec["action_id"].to_numpy(),
                "original_reviewer_id": s_dec["reviewer_id"].to_numpy(),
                "original_vendor_id": s_dec["vendor_id"].array,
                "original_queue_id": s_dec["queue_id"].to_numpy(),
                "original_decided_at": s_dec["decided_at"].to_numpy(),
                "state": np.where(done_by_now, "closed", "pending"),
                "agreed": pd.Series(~wrong, dtype="boolean").where(done_by_now).array,
                "error_type": np.where(done_by_now, error_type, ""),
                "severity": np.where(wrong & done_by_now, 2.0, 0.0),
                "closed_at": closed.to_numpy(),
            }
        ),
    )
    c_ids, c_dec, c_closed = s_ids[done_by_now], s_dec[done_by_now], closed[done_by_now].to_numpy()
    c_violation, c_policy = truth_violation[done_by_now], truth_policy[done_by_now]
    add(
        "review",
        pd.DataFrame(
            {
                "sample_id": c_ids,
                "reviewer_id": w.qa_lead,
                "is_violation": c_violation,
                "policy_id": c_policy.array,
                "action_id": np.where(c_violation, w.actions["remove"], w.actions["no-action"]),
                "rationale": "",
                "decided_at": c_closed,
                "agrees": ~wrong[done_by_now],
            }
        ),
    )
    add(
        "truth",
        pd.DataFrame(
            {
                "item_id": c_dec["item_id"].to_numpy(),
                "decision_id": c_dec["id"].to_numpy(),
                "origin": "qa_verified",
                "is_violation": c_violation,
                "policy_id": c_policy.array,
                "recorded_by_id": w.qa_lead,
                "recorded_at": c_closed,
            }
        ),
    )
    return Chunk({kind: pd.concat(fs, ignore_index=True) for kind, fs in frames.items()}, d_n + k)


KINDS = ("item", "decision", "event", "score", "sample", "review", "truth")


def framed(chunk: Chunk) -> Iterator[tuple[Any, pd.DataFrame]]:
    """The chunk's frames by model, in insert order, each with the model's fields in order."""
    for (model, names), kind in zip(models().items(), KINDS, strict=True):
        if kind in chunk.frames:
            yield model, chunk.frames[kind][names]


def instances(model: Any, frame: pd.DataFrame) -> list[Any]:
    """The frame's rows as model instances, for ``bulk_create``: JSON text parsed, seconds as durations."""
    from django.db import models as m

    kinds = {c: model._meta.get_field(c) for c in frame.columns}

    def value(f: Any, v: Any) -> Any:
        if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(f, m.JSONField):
            return json.loads(v)
        if isinstance(f, m.DurationField):
            return timedelta(seconds=float(v))
        if isinstance(v, np.datetime64):
            return pd.Timestamp(v).tz_localize("UTC").to_pydatetime()
        if isinstance(v, pd.Timestamp):
            return v.to_pydatetime(warn=False)
        return v.item() if isinstance(v, np.generic) else v

    return [model(**{c: value(kinds[c], v) for c, v in row.items()}) for row in frame.to_dict("records")]


@dataclass(frozen=True)
class Panel:
    """A dashboard panel as its page reads it: from the rollups, for a MetricFilter."""

    name: str
    read: Any  # MetricFilter -> the panel's table, metrics or rows
    periods: tuple[int, ...] = (28, 90)  # days back from today the bench times it for


def panels(*, now: datetime | None = None) -> list[Panel]:
    """Every dashboard panel, in the order the bench times them; the test checks each against raw rows (the live
    backlog counted at ``now``, default the moment it is read)."""
    from analytics.selectors import capacity as cap
    from analytics.selectors import classifiers as clf
    from analytics.selectors import operations as ops
    from analytics.selectors.vendors import vendor_scorecard_table

    threshold = clf.active_threshold(CATEGORY)
    kw = {"category": CATEGORY, "backend": "local"}

    def by(read: Any, dimension: str) -> Any:
        return lambda f: read(f, by=dimension)

    return [
        Panel("intake volume by source", by(ops.intake_volume, "source")),
        Panel("automation rate", ops.automation_rate),
        Panel("backlog by queue x age", lambda f: ops.backlog(f, at=now), (90,)),
        *(Panel(f"turnaround/wait/handle p50/p90/p95 by {d}", by(ops.latency_percentiles, d)) for d in LATENCY_BY),
        *(Panel(f"SLA attainment by {d}", by(ops.sla_attainment, d)) for d in ("queue", "vendor")),
        Panel("escalation rate by queue", ops.escalation_rate),
        Panel("appeal and overturn rates by queue", ops.appeal_rates),
        Panel("reviewer productivity", ops.reviewer_productivity),
        Panel("vendor weekly scorecard", vendor_scorecard_table),
        Panel("capacity plan (forecasts precomputed)", lambda f: cap.capacity_plan_table(f, memo=False)),
        Panel(f"classifier metrics at {threshold:g} ({CATEGORY})", lambda f: clf.classifier_metrics_at(f, **kw)),
        Panel("PR curve / AUPRC", lambda f: clf.classifier_pr_curve(f, **kw)),
        Panel("calibration", lambda f: clf.classifier_calibration(f, **kw)),
        Panel("weekly drift", lambda f: clf.classifier_drift(f, **kw)),
    ]


LATENCY_BY = ("queue", "policy", "priority")
