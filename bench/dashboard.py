"""Dashboards at scale: every panel read from the rollups, against the same figure computed over raw rows.

Self-contained: creates its own database, migrates it, makes a world (queues, policies with classifier
categories, two vendors and an in-house team, 60 reviewers), COPYs in ``--decisions`` decided items over 90
days with their decisions, item events, one local classifier score each, QA samples with re-reviews and ground
truth, appeals, auto-actioned items and an open backlog, builds the rollups once, then times each panel from the
rollups (28 and 90 days) beside the naive computation over raw rows, checks they agree, and cleans up.

    .venv/bin/python bench/dashboard.py [--decisions 10000000] [--repeat 5] [--keep]

The naive computations use the rollups' own definitions (``analytics.rollups.deciding_decisions`` and friends)
as SQL over the raw tables: ``percentile_disc`` (the inverted-CDF order statistic the histograms approximate)
for percentiles, ``COUNT(*) FILTER`` for rates, window functions for productive time, a join of scores and
final decisions for the classifier figures (AUPRC checked against scikit-learn).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from benchlib import (
    ROOT,
    Report,
    app_env,
    cpu_model,
    database_recreate,
    django_setup,
    manage,
    scratch_database,
    scratch_release,
)
from psycopg import sql

RESULTS = ROOT / "bench" / "results" / "dashboard.md"
DAYS = 90
CHUNK = 250_000  # decided items generated and COPYed per round
TARGET_SECONDS = 1.0
WORK_MEM = "64MB"  # for both paths alike; the server default (4MB) makes the naive sorts spill to disk

# slug, name, SLA hours, share of decisions, median queue wait (hours), vendors may work it, policies
QUEUES: list[tuple[str, str, int, float, float, bool, list[str]]] = [
    ("general", "General intake", 24, 0.50, 3.0, True, ["spam", "harassment", "hateful-conduct", "violent-threats"]),
    ("hate-harassment", "Hate & harassment", 12, 0.18, 2.0, False, ["hateful-conduct", "harassment"]),
    ("self-harm", "Self-harm", 4, 0.05, 0.5, False, ["self-harm"]),
    ("fraud-spam", "Fraud & spam", 48, 0.22, 10.0, True, ["fraud-scams", "spam"]),
    ("tier-2", "Tier-2 escalations", 8, 0.05, 2.0, False, ["violent-threats", "hateful-conduct", "child-safety"]),
]  # fmt: skip
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
VENDORS = [("meridian", "Meridian Review Services", "0.9500", "0.9200", "0.0850"),
           ("kestrel", "Kestrel Moderation", "0.9000", "0.8800", "0.0550")]  # fmt: skip
REVIEWERS_PER_TEAM = 20
SOURCES = ["web", "ios", "android", "partner-api"]
SURFACES = ["post", "comment", "profile", "message", "listing"]
PRIORITIES = np.array([0, 10, 50, 100])
SHARES = {"auto": 0.12, "violation": 0.3, "bulk": 0.02, "escalated": 0.03, "appeal": 0.005, "qa": 0.01}


# --- the world --------------------------------------------------------------------------------------------------


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


# --- generating the rows --------------------------------------------------------------------------------------

ITEM_COLUMNS = [
    "id", "source", "external_id", "kind", "text", "media_urls", "author_ref", "surface", "language", "metadata",
    "report_reasons", "report_count", "is_golden", "state", "queue_id", "priority", "tags", "required_reviews",
    "received_at", "triaged_at", "queued_at", "claimed_at", "decided_at", "due_at", "appeal_of_id",
]  # fmt: skip
DECISION_COLUMNS = [
    "id", "item_id", "reviewer_id", "queue_id", "policy_id", "action_id", "is_violation", "rationale",
    "claimed_at", "decided_at", "handle_time", "is_final", "appeal_outcome", "vendor_id",
]  # fmt: skip
EVENT_COLUMNS = ["id", "item_id", "at", "actor_id", "actor_label", "event", "from_state", "to_state", "queue_id",
                 "data"]  # fmt: skip
SCORE_COLUMNS = ["id", "item_id", "backend", "model", "model_version", "prompt_version", "scores", "detail",
                 "created_at"]  # fmt: skip
SAMPLE_COLUMNS = [
    "id", "item_id", "decision_id", "reason", "inclusion_probability", "sampled_at", "original_is_violation",
    "original_policy_id", "original_action_id", "original_reviewer_id", "original_vendor_id", "original_queue_id",
    "original_decided_at", "state", "agreed", "error_type", "severity", "closed_at",
]  # fmt: skip
REVIEW_COLUMNS = ["sample_id", "reviewer_id", "is_violation", "policy_id", "action_id", "rationale", "decided_at",
                  "agrees"]  # fmt: skip
TRUTH_COLUMNS = ["item_id", "decision_id", "origin", "is_violation", "policy_id", "recorded_by_id", "recorded_at"]
TABLES = {
    "queues_reviewitem": ITEM_COLUMNS,
    "queues_decision": DECISION_COLUMNS,
    "queues_itemevent": EVENT_COLUMNS,
    "routing_classifierscore": SCORE_COLUMNS,
    "qa_qasample": SAMPLE_COLUMNS,
    "qa_qareview": REVIEW_COLUMNS,
    "queues_groundtruth": TRUTH_COLUMNS,
}


@dataclass
class Ids:
    """The next id of each table: the bench assigns ids itself, so rows can point at each other without a read."""

    next: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 1))

    def take(self, table: str, n: int) -> np.ndarray:
        first = self.next[table]
        self.next[table] += n
        return np.arange(first, first + n, dtype=np.int64)


def _ts(base: datetime, seconds: np.ndarray) -> pd.Series:
    """Timestamps ``base + seconds`` (NaN stays missing)."""
    return pd.Series(pd.Timestamp(base) + pd.to_timedelta(seconds, unit="s"))


def _lognormal(rng: np.random.Generator, median: np.ndarray | float, sigma: float, n: int) -> np.ndarray:
    return np.exp(np.log(median) + sigma * rng.standard_normal(n))


def _scores_json(rng: np.random.Generator, positive: np.ndarray) -> pd.Series:
    """The local model's scores: each category high (beta(5, 2)) where the item violates a policy mapped to it,
    low (beta(1, 8)) elsewhere, rounded to 4 decimals so the JSON is short."""
    text = pd.Series("{", index=range(len(positive)))
    for n, category in enumerate(SCORED):
        hit = positive[:, n]
        p = np.where(hit, rng.beta(5, 2, len(hit)), rng.beta(1, 8, len(hit))).round(4)
        text = text + ("" if n == 0 else ", ") + f'"{category}": ' + pd.Series(p).astype(str)
    return text + "}"


@dataclass
class Chunk:
    frames: dict[str, pd.DataFrame]
    decisions: int


def chunk_generate(rng: np.random.Generator, n: int, w: World, ids: Ids, now: datetime) -> Chunk:
    """``n`` items received over the period and (mostly) decided, with what hangs off them; a share of extra
    items closed by a rule; appeals of a share of the decided ones. Items whose decision would fall after ``now``
    stay open (queued, or claimed when the claim is past): the backlog."""
    start = now - timedelta(days=DAYS)
    span = (now - start).total_seconds()
    q_slug = [q[0] for q in QUEUES]
    q_idx = rng.choice(len(QUEUES), n, p=[q[3] for q in QUEUES])
    queue_id = np.array([w.queues[s] for s in q_slug])[q_idx]
    sla = np.array([w.queue_sla[w.queues[s]] for s in q_slug])[q_idx]
    wait_median = np.array([q[4] for q in QUEUES])[q_idx] * 3600
    received = rng.uniform(0, span, n)
    wait = _lognormal(rng, wait_median, 1.1, n)
    handle = _lognormal(rng, 75.0, 0.7, n) + 2
    bulk = rng.random(n) < SHARES["bulk"]
    claimed = received + wait
    decided = claimed + handle
    open_ = decided >= span
    claimed_open = open_ & (claimed < span)
    # Reviewers: vendor teams work only the queues open to vendors; the rest are in-house.
    vendor_ok = np.array([q[5] for q in QUEUES])[q_idx]
    house = REVIEWERS_PER_TEAM
    everyone = len(w.reviewers)
    r_idx = np.where(vendor_ok, rng.integers(0, everyone, n), rng.integers(0, house, n))
    reviewer = np.array(w.reviewers)[r_idx]
    violation = rng.random(n) < SHARES["violation"]
    q_policies = [[w.policies[p] for p in q[6]] for q in QUEUES]
    pick = rng.integers(0, 1 << 30, n)
    policy = np.array([q_policies[q][k % len(q_policies[q])] for q, k in zip(q_idx, pick, strict=True)])
    policy = np.where(violation, policy, -1)
    cat_of_policy = {w.policies[slug]: cats for slug, _, cats in POLICIES}
    positive = np.zeros((n, len(SCORED)), dtype=bool)
    for pid, cats in cat_of_policy.items():
        rows = policy == pid
        for c in cats:
            if c in SCORED:
                positive[rows, SCORED.index(c)] = True
    item_ids = ids.take("queues_reviewitem", n)
    frames: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    claim_at = np.where(bulk, np.nan, claimed)
    state = np.where(open_, np.where(claimed_open & ~bulk, "claimed", "queued"), "decided")
    # A few items wait far longer than their queue's usual: the backlog's older age buckets.
    frames["queues_reviewitem"].append(
        pd.DataFrame(
            {
                "id": item_ids,
                "source": np.array(SOURCES)[rng.integers(0, len(SOURCES), n)],
                "external_id": pd.Series(item_ids).astype(str).radd("b-"),
                "kind": np.where(rng.random(n) < 0.2, "user_report", "content"),
                "text": "",
                "media_urls": "[]",
                "author_ref": "",
                "surface": np.array(SURFACES)[rng.integers(0, len(SURFACES), n)],
                "language": "en",
                "metadata": "{}",
                "report_reasons": "[]",
                "report_count": 0,
                "is_golden": False,
                "state": state,
                "queue_id": queue_id,
                "priority": PRIORITIES[rng.choice(4, n, p=[0.8, 0.15, 0.04, 0.01])],
                "tags": "[]",
                "required_reviews": 1,
                "received_at": _ts(start, received),
                "triaged_at": _ts(start, received + 1),
                "queued_at": _ts(start, received + 1),
                "claimed_at": _ts(start, np.where(open_ & ~claimed_open, np.nan, claim_at)),
                "decided_at": _ts(start, np.where(open_, np.nan, decided)),
                "due_at": _ts(start, received + sla),
                "appeal_of_id": pd.array([None] * n, dtype="Int64"),
            }
        )
    )
    done = ~open_
    d_items, d_n = item_ids[done], int(done.sum())
    d_ids = ids.take("queues_decision", d_n)
    d_policy = pd.array(np.where(policy[done] < 0, 0, policy[done]), dtype="Int64")
    d_policy[policy[done] < 0] = pd.NA
    decision_frame = pd.DataFrame(
        {
            "id": d_ids,
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
        }
    )
    frames["queues_decision"].append(decision_frame)
    # Events: a claim and a decision per decided item (a bulk decision claims nothing), and an escalation.
    claimed_rows = done & ~bulk
    escalated = done & ~bulk & (rng.random(n) < SHARES["escalated"])
    for mask, event, at, frm, to in (
        (claimed_rows, "claimed", claimed, "queued", "claimed"),
        (escalated, "escalated", claimed + handle / 2, "claimed", "queued"),
        (done, "decided", decided, "claimed", "decided"),
    ):
        k = int(mask.sum())
        frames["queues_itemevent"].append(
            pd.DataFrame({"id": ids.take("queues_itemevent", k), "item_id": item_ids[mask], "at": _ts(start, at[mask]),
                          "actor_id": reviewer[mask], "actor_label": "reviewer", "event": event, "from_state": frm,
                          "to_state": to, "queue_id": queue_id[mask], "data": "{}"})
        )  # fmt: skip
    # Triage put every one of them in its queue a second after receipt: a 'queued' event by no one.
    frames["queues_itemevent"].append(
        pd.DataFrame({"id": ids.take("queues_itemevent", n), "item_id": item_ids, "at": _ts(start, received + 1),
                      "actor_id": pd.array([None] * n, dtype="Int64"), "actor_label": "triage", "event": "queued",
                      "from_state": "triaged", "to_state": "queued", "queue_id": queue_id, "data": "{}"})
    )  # fmt: skip
    # Items a rule closed: no queue, no decision, an auto_actioned event by no one.
    n_auto = int(n * SHARES["auto"])
    auto_ids = ids.take("queues_reviewitem", n_auto)
    auto_received = rng.uniform(0, span, n_auto)
    frames["queues_reviewitem"].append(
        pd.DataFrame({"id": auto_ids, "source": np.array(SOURCES)[rng.integers(0, len(SOURCES), n_auto)],
                      "external_id": pd.Series(auto_ids).astype(str).radd("b-"), "kind": "content", "text": "",
                      "media_urls": "[]", "author_ref": "", "surface": "post", "language": "en", "metadata": "{}",
                      "report_reasons": "[]", "report_count": 0, "is_golden": False, "state": "auto_actioned",
                      "queue_id": pd.array([None] * n_auto, dtype="Int64"), "priority": 0, "tags": "[]",
                      "required_reviews": 1, "received_at": _ts(start, auto_received),
                      "triaged_at": _ts(start, auto_received + 1), "queued_at": _ts(start, np.full(n_auto, np.nan)),
                      "claimed_at": _ts(start, np.full(n_auto, np.nan)),
                      "decided_at": _ts(start, np.full(n_auto, np.nan)), "due_at": _ts(start, np.full(n_auto, np.nan)),
                      "appeal_of_id": pd.array([None] * n_auto, dtype="Int64")})
    )  # fmt: skip
    frames["queues_itemevent"].append(
        pd.DataFrame({"id": ids.take("queues_itemevent", n_auto), "item_id": auto_ids,
                      "at": _ts(start, auto_received + 1), "actor_id": pd.array([None] * n_auto, dtype="Int64"),
                      "actor_label": "rule", "event": "auto_actioned", "from_state": "received",
                      "to_state": "auto_actioned", "queue_id": pd.array([None] * n_auto, dtype="Int64"),
                      "data": "{}"})
    )  # fmt: skip
    # Appeals of a share of decided items: received ~2 days after the decision, decided within the appeals SLA.
    appealed = np.flatnonzero(done & (rng.random(n) < SHARES["appeal"]))
    a_received = decided[appealed] + _lognormal(rng, 2 * 86400, 0.8, len(appealed))
    a_decided = a_received + _lognormal(rng, 20 * 3600, 0.8, len(appealed))
    keep = a_received < span
    appealed, a_received, a_decided = appealed[keep], a_received[keep], a_decided[keep]
    a_done = a_decided < span
    a_ids = ids.take("queues_reviewitem", len(appealed))
    a_n = len(appealed)
    appeals_q = w.queues["appeals"]
    frames["queues_reviewitem"].append(
        pd.DataFrame({"id": a_ids, "source": "appeals", "external_id": pd.Series(a_ids).astype(str).radd("a-"),
                      "kind": "appeal", "text": "", "media_urls": "[]", "author_ref": "", "surface": "post",
                      "language": "en", "metadata": "{}", "report_reasons": "[]", "report_count": 0,
                      "is_golden": False, "state": np.where(a_done, "decided", "queued"), "queue_id": appeals_q,
                      "priority": 0, "tags": "[]", "required_reviews": 1, "received_at": _ts(start, a_received),
                      "triaged_at": _ts(start, a_received), "queued_at": _ts(start, a_received),
                      "claimed_at": _ts(start, np.where(a_done, a_decided - 120, np.nan)),
                      "decided_at": _ts(start, np.where(a_done, a_decided, np.nan)),
                      "due_at": _ts(start, a_received + 72 * 3600), "appeal_of_id": item_ids[appealed]})
    )  # fmt: skip
    k = int(a_done.sum())
    overturned = rng.random(k) < 0.2
    a_reviewer = np.array(w.reviewers[:house])[rng.integers(0, house, k)]
    frames["queues_decision"].append(
        pd.DataFrame({"id": ids.take("queues_decision", k), "item_id": a_ids[a_done], "reviewer_id": a_reviewer,
                      "queue_id": appeals_q, "policy_id": pd.array([None] * k, dtype="Int64"),
                      "action_id": w.actions["no-action"], "is_violation": False, "rationale": "appeal reviewed",
                      "claimed_at": _ts(start, a_decided[a_done] - 120), "decided_at": _ts(start, a_decided[a_done]),
                      "handle_time": 120.0, "is_final": True,
                      "appeal_outcome": np.where(overturned, "overturned", "upheld"),
                      "vendor_id": pd.array([None] * k, dtype="Int64")})  # in-house reviewers
    )  # fmt: skip
    for event, at in (("claimed", a_decided[a_done] - 120), ("decided", a_decided[a_done])):
        frames["queues_itemevent"].append(
            pd.DataFrame({"id": ids.take("queues_itemevent", k), "item_id": a_ids[a_done], "at": _ts(start, at),
                          "actor_id": a_reviewer, "actor_label": "reviewer", "event": event, "from_state": "",
                          "to_state": "", "queue_id": appeals_q, "data": "{}"})
        )  # fmt: skip
    # One local score per item (appeals are scored too; no truth counts them).
    all_items = np.concatenate([item_ids, auto_ids, a_ids])
    all_positive = np.concatenate([positive, np.zeros((n_auto + a_n, len(SCORED)), dtype=bool)])
    all_received = np.concatenate([received, auto_received, a_received])
    m = len(all_items)
    frames["routing_classifierscore"].append(
        pd.DataFrame({"id": ids.take("routing_classifierscore", m), "item_id": all_items, "backend": "local",
                      "model": "local", "model_version": "7", "prompt_version": "", "scores":
                      _scores_json(rng, all_positive), "detail": "{}", "created_at": _ts(start, all_received + 1)})
    )  # fmt: skip
    # QA: a 1% random sample of decisions, closed with a blind re-review (wrong 5% of the time) and ground truth.
    s_rows = rng.random(d_n) < SHARES["qa"]
    s_n = int(s_rows.sum())
    s_ids = ids.take("qa_qasample", s_n)
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
    vendors = s_dec["vendor_id"].array
    error_type = np.where(wrong, np.where(s_dec["is_violation"], "false_positive", "false_negative"), "")
    frames["qa_qasample"].append(
        pd.DataFrame({"id": s_ids, "item_id": s_dec["item_id"].to_numpy(), "decision_id": s_dec["id"].to_numpy(),
                      "reason": "random", "inclusion_probability": SHARES["qa"],
                      "sampled_at": _ts(start, s_decided + 60),
                      "original_is_violation": s_dec["is_violation"].to_numpy(),
                      "original_policy_id": s_dec["policy_id"].array, "original_action_id":
                      s_dec["action_id"].to_numpy(), "original_reviewer_id": s_dec["reviewer_id"].to_numpy(),
                      "original_vendor_id": vendors, "original_queue_id": s_dec["queue_id"].to_numpy(),
                      "original_decided_at": s_dec["decided_at"].to_numpy(),
                      "state": np.where(done_by_now, "closed", "pending"),
                      "agreed": pd.Series(~wrong, dtype="boolean").where(done_by_now).array,
                      "error_type": np.where(done_by_now, error_type, ""),
                      "severity": np.where(wrong & done_by_now, 2.0, 0.0), "closed_at": closed.to_numpy()})
    )  # fmt: skip
    c_ids, c_dec, c_closed = s_ids[done_by_now], s_dec[done_by_now], closed[done_by_now].to_numpy()
    c_violation, c_policy, c_agrees = truth_violation[done_by_now], truth_policy[done_by_now], ~wrong[done_by_now]
    frames["qa_qareview"].append(
        pd.DataFrame({"sample_id": c_ids, "reviewer_id": w.qa_lead, "is_violation": c_violation,
                      "policy_id": c_policy.array, "action_id": np.where(c_violation, w.actions["remove"],
                                                                         w.actions["no-action"]),
                      "rationale": "", "decided_at": c_closed, "agrees": c_agrees})
    )  # fmt: skip
    frames["queues_groundtruth"].append(
        pd.DataFrame({"item_id": c_dec["item_id"].to_numpy(), "decision_id": c_dec["id"].to_numpy(),
                      "origin": "qa_verified", "is_violation": c_violation, "policy_id": c_policy.array,
                      "recorded_by_id": w.qa_lead, "recorded_at": c_closed})
    )  # fmt: skip
    joined = {t: pd.concat(fs, ignore_index=True)[TABLES[t]] for t, fs in frames.items() if fs}
    return Chunk(joined, d_n + k)


def copy_text(frame: pd.DataFrame) -> bytes:
    """The frame as COPY text: tab-separated, \\N for NULL (no field holds a tab, newline or backslash)."""
    out = io.StringIO()
    frame.to_csv(out, sep="\t", header=False, index=False, na_rep="\\N", quoting=3, quotechar="\x01",
                 date_format="%Y-%m-%d %H:%M:%S.%f+00")  # fmt: skip
    return out.getvalue().encode()


@dataclass
class Seeded:
    seconds: float = 0.0
    generate_seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    bytes: int = 0
    decisions: int = 0
    index_seconds: float = 0.0
    analyze_seconds: float = 0.0


def seed(conninfo: str, w: World, decisions: int, now: datetime) -> Seeded:
    """COPY everything in, generating the next chunk on a thread while PostgreSQL ingests the last.

    Secondary indexes are dropped first and built again after (what a bulk load does; the schema ends as
    migrated), and foreign keys are not checked row by row (``session_replication_role = replica``): every id
    is the bench's own.
    """
    out = Seeded()
    ids = Ids()
    # ("copy", table, text, rows) or ("decided", "", b"", decisions) per chunk; None at the end.
    blocks: queue.Queue[tuple[str, str, bytes, int] | None] = queue.Queue(maxsize=8)
    failure: list[BaseException] = []

    def produce() -> None:
        rng = np.random.default_rng(2025)
        made, items, ratio = 0, 0, 0.99  # open items and appeals: decisions per item generated, learnt as we go
        try:
            while made < decisions:
                t0 = time.perf_counter()
                n = max(1, min(CHUNK, math.ceil((decisions - made) / ratio)))
                chunk = chunk_generate(rng, n, w, ids, now)
                made, items = made + chunk.decisions, items + n
                ratio = made / items
                for table, frame in chunk.frames.items():
                    blocks.put(("copy", table, copy_text(frame), len(frame)))
                out.generate_seconds += time.perf_counter() - t0
                blocks.put(("decided", "", b"", chunk.decisions))
        except BaseException as e:  # the consumer raises it
            failure.append(e)
        finally:
            blocks.put(None)

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        indexes = conn.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname = ANY(%s) AND NOT i.indisprimary "
            "AND NOT i.indisunique",
            [list(TABLES)],
        ).fetchall()
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        t0 = time.perf_counter()
        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        reported = 0
        while (block := blocks.get()) is not None:
            kind, table, payload, rows = block
            if kind == "decided":
                out.decisions += rows
                if out.decisions - reported >= 1_000_000:
                    reported = out.decisions
                    rate = out.decisions / (time.perf_counter() - t0)
                    print(f"  {out.decisions:,} decided items seeded ({rate:,.0f}/s)", flush=True)
                continue
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, TABLES[table]))
            )
            with conn.cursor() as cur, cur.copy(statement) as copy:
                copy.write(payload)
            out.rows[table] += rows
            out.bytes += len(payload)
        thread.join()
        if failure:
            raise failure[0]
        for table, columns in TABLES.items():
            if "id" in columns:  # the bench gave the ids: move the sequence past them
                conn.execute(
                    sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), {})").format(
                        sql.Literal(table), sql.Literal(max(1, ids.next[table] - 1))
                    )
                )
        out.seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        for _, definition in indexes:
            conn.execute(definition)
        out.index_seconds = time.perf_counter() - t1
        t2 = time.perf_counter()
        for table in TABLES:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
        conn.execute("CHECKPOINT")
        out.analyze_seconds = time.perf_counter() - t2
    return out


# --- panels ---------------------------------------------------------------------------------------------------


def _sql(qs: Any) -> tuple[str, list[Any]]:
    text, params = qs.query.sql_with_params()
    return text, list(params)


def _rows(query: str, params: list[Any]) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(query, params)
        return list(cur.fetchall())


def _deciding(f: Any) -> Any:
    from django.db.models import F

    from analytics.rollups import VENDOR_OF_REVIEWER, deciding_decisions, escalated_exists, policy_in_force

    return (
        deciding_decisions()
        .filter(decided_at__gte=f.start_at, decided_at__lt=f.end_at)
        .annotate(final_policy=policy_in_force(), was_escalated=escalated_exists())
        .values(
            "decided_at", "claimed_at", "handle_time", q=F("queue_id"), p=F("final_policy"), v=F(VENDOR_OF_REVIEWER),
            prio=F("item__priority"), received=F("item__received_at"), due=F("item__due_at"), esc=F("was_escalated"),
        )
    )  # fmt: skip


_PCT = "percentile_disc(ARRAY[0.5, 0.9, 0.95]) WITHIN GROUP (ORDER BY {})"
_LATENCY = ", ".join(
    _PCT.format(e)
    for e in (
        "extract(epoch FROM d.decided_at - d.received)",
        "extract(epoch FROM d.claimed_at - d.received)",
        "extract(epoch FROM d.handle_time)",
    )
)


def naive_latency(f: Any, by: str) -> dict[Any, tuple[Any, ...]]:
    column = {"queue": "q", "policy": "p", "vendor": "v", "priority": "prio"}[by]
    inner, params = _sql(_deciding(f))
    rows = _rows(f"SELECT d.{column}, count(*), {_LATENCY} FROM ({inner}) d GROUP BY 1", params)
    return {r[0]: (r[1], *r[2], *r[3], *r[4]) for r in rows}


def naive_sla(f: Any, by: str) -> dict[Any, tuple[Any, ...]]:
    column = {"queue": "q", "vendor": "v"}[by]
    inner, params = _sql(_deciding(f))
    rows = _rows(
        f"SELECT d.{column}, count(*), count(*) FILTER (WHERE d.due IS NOT NULL), "
        f"count(*) FILTER (WHERE d.decided_at <= d.due) FROM ({inner}) d GROUP BY 1",
        params,
    )
    return {r[0]: (r[1], r[2], r[3], r[3] / r[2] if r[2] else None) for r in rows}


def naive_escalation(f: Any) -> dict[Any, tuple[Any, ...]]:
    inner, params = _sql(_deciding(f))
    rows = _rows(f"SELECT d.q, count(*), count(*) FILTER (WHERE d.esc) FROM ({inner}) d GROUP BY 1", params)
    return {r[0]: (r[1], r[2], r[2] / r[1]) for r in rows}


def naive_intake(f: Any, *, by_source: bool) -> dict[Any, tuple[Any, ...]]:
    from django.db.models import Count, Q
    from django.db.models.functions import TruncDate

    from analytics.rollups import auto_actioned_exists, intake_items

    keys = ("day", "source") if by_source else ("day",)
    rows = (
        intake_items()
        .filter(received_at__gte=f.start_at, received_at__lt=f.end_at)
        .annotate(day=TruncDate("received_at"), was_auto=auto_actioned_exists())
        .values(*keys)
        .annotate(n=Count("pk"), auto=Count("pk", filter=Q(was_auto=True)),
                  routed=Count("pk", filter=Q(queued_at__isnull=False)))
        .order_by()
    )  # fmt: skip
    return {tuple(r[k] for k in keys): (r["n"], r["auto"], r["routed"]) for r in rows}


def naive_backlog(at: datetime) -> dict[Any, tuple[Any, ...]]:
    from analytics.rollups import BACKLOG_AGES, backlog_items

    cases, params = [], []
    for name, upper in BACKLOG_AGES:
        if upper is not None:
            cases.append("WHEN i.received_at > %s THEN %s")
            params += [at - upper, str(name)]
    inner, inner_params = _sql(backlog_items().values("queue_id", "received_at", "due_at"))
    rows = _rows(
        f"SELECT i.queue_id, CASE {' '.join(cases)} ELSE %s END, count(*), count(*) FILTER (WHERE i.due_at <= %s) "
        f"FROM ({inner}) i GROUP BY 1, 2",
        [*params, str(BACKLOG_AGES[-1][0]), at + timedelta(hours=1), *inner_params],
    )
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def naive_appeals(f: Any) -> dict[Any, tuple[Any, ...]]:
    from django.db.models import Count, Exists, OuterRef, Q, Subquery

    from analytics.rollups import deciding_decisions
    from queues.models import Decision, ItemKind, ReviewItem

    def contested_queue(ref: str) -> Subquery:
        return Subquery(deciding_decisions().filter(item=OuterRef(ref)).values("queue_id")[:1])

    period = {"decided_at__gte": f.start_at, "decided_at__lt": f.end_at}
    decided = dict(deciding_decisions().filter(**period).values("queue_id").annotate(n=Count("pk"))
                   .values_list("queue_id", "n").order_by())  # fmt: skip
    received = dict(
        ReviewItem.objects.filter(kind=ItemKind.APPEAL, is_golden=False, received_at__gte=f.start_at,
                                  received_at__lt=f.end_at)
        .annotate(q=contested_queue("appeal_of")).values("q").annotate(n=Count("pk")).values_list("q", "n").order_by()
    )  # fmt: skip
    outcomes = {
        r["q"]: r
        for r in Decision.objects.filter(**period, item__is_golden=False)
        .exclude(appeal_outcome="")
        .annotate(q=contested_queue("item__appeal_of"))
        .values("q")
        .annotate(up=Count("pk", filter=Q(appeal_outcome="upheld")),
                  over=Count("pk", filter=Q(appeal_outcome="overturned")))
        .order_by()
    }  # fmt: skip
    appealed = dict(
        deciding_decisions().filter(**period)
        .filter(Exists(ReviewItem.objects.filter(appeal_of=OuterRef("item"), kind=ItemKind.APPEAL)))
        .values("queue_id").annotate(n=Count("pk")).values_list("queue_id", "n").order_by()
    )  # fmt: skip
    out = {}
    for key in set(decided) | set(received) | set(outcomes) | set(appealed):
        n, a = decided.get(key, 0), received.get(key, 0)
        up, over = (outcomes[key]["up"], outcomes[key]["over"]) if key in outcomes else (0, 0)
        out[key] = (n, a, appealed.get(key, 0), up, over, over / (up + over) if up + over else None)
    return out


def naive_productivity(f: Any) -> dict[Any, tuple[Any, ...]]:
    from django.db.models import Count, Sum

    from queues.models import Decision
    from queues.wellness import BREAK_GAP

    decided = {
        r["reviewer"]: r
        for r in Decision.objects.filter(decided_at__gte=f.start_at, decided_at__lt=f.end_at, item__is_golden=False)
        .values("reviewer")
        .annotate(n=Count("pk"), handle=Sum("handle_time"), hn=Count("handle_time"))
        .order_by()
    }
    productive = dict(
        _rows(
            """
            SELECT actor_id, sum(extract(epoch FROM at - prev_at)) FILTER (
                WHERE prev_at IS NOT NULL AND (at - prev_at < %s OR (prev_event = 'claimed' AND prev_item = item_id)))
            FROM (
                SELECT e.actor_id, e.at, e.item_id, lag(e.at) OVER w AS prev_at, lag(e.event) OVER w AS prev_event,
                       lag(e.item_id) OVER w AS prev_item
                FROM queues_itemevent e JOIN queues_reviewitem i ON i.id = e.item_id AND NOT i.is_golden
                WHERE e.actor_id IS NOT NULL AND e.at >= %s AND e.at < %s
                WINDOW w AS (PARTITION BY e.actor_id, (e.at AT TIME ZONE current_setting('TimeZone'))::date
                             ORDER BY e.at, e.id)
            ) acts GROUP BY actor_id
            """,
            [BREAK_GAP, f.start_at, f.end_at],
        )
    )
    out = {}
    for reviewer in set(decided) | set(productive):
        r = decided.get(reviewer, {})
        handle = r.get("handle")
        out[reviewer] = (r.get("n", 0), float(productive.get(reviewer) or 0.0) / 3600,
                         handle.total_seconds() / r["hn"] if handle and r["hn"] else None)  # fmt: skip
    return out


def naive_vendor_weeks(f: Any) -> dict[Any, tuple[Any, ...]]:
    """Volume, SLA attainment, turnaround p90, AHT, QA quality score and agreement (kappa) per vendor and ISO
    week: the operational measures from the raw decisions, the QA measures from the raw QA samples through
    ``qa.selectors.slice_stats`` (point estimates, as the scorecard shows)."""
    from analytics.filters import MetricFilter
    from analytics.selectors.vendors import iso_weeks
    from qa.selectors import QaFilter, slice_stats

    weeks = iso_weeks(f)
    wide = MetricFilter(weeks[0] - timedelta(days=7), weeks[-1] + timedelta(days=6))
    inner, params = _sql(_deciding(wide))
    rows = _rows(
        f"SELECT d.v, date_trunc('week', d.decided_at)::date, count(*), count(*) FILTER (WHERE d.due IS NOT NULL), "
        "count(*) FILTER (WHERE d.decided_at <= d.due), percentile_disc(0.9) WITHIN GROUP "
        "(ORDER BY extract(epoch FROM d.decided_at - d.received)), sum(extract(epoch FROM d.handle_time)), "
        f"count(d.handle_time) FROM ({inner}) d WHERE d.v IS NOT NULL GROUP BY 1, 2",
        params,
    )
    out: dict[Any, tuple[Any, ...]] = {}
    for v, week, n, counted, within, p90, handle, handled in rows:
        if week not in weeks:  # the week before the period: the scorecards' trend needs it, the table shows none
            continue
        start = datetime.combine(week, datetime.min.time(), tzinfo=UTC)
        end = min(start + timedelta(days=7), f.end_at)
        qa = slice_stats(QaFilter(vendor_id=v, start=start, end=end), n_resamples=0)
        out[(v, week)] = (n, within / counted if counted else None, p90, float(handle) / handled if handled else None,
                          qa.quality.value if qa.quality else None, qa.kappa.value if qa.kappa else None)  # fmt: skip
    return out


def naive_capacity(f: Any) -> dict[Any, tuple[Any, ...]]:
    """Per active queue: items that entered it in the history days (raw 'queued'/'escalated' events), the mean
    handle time of the items it decided (raw deciding decisions), and the 14-day forecast's mean, fitted anew."""
    from analytics import capacity
    from analytics.rollups import ENTERING_EVENTS
    from analytics.selectors.capacity import HORIZON, history_days
    from queues.models import Queue

    days = history_days(f)
    start = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    volumes = _rows(
        "SELECT queue_id, (at AT TIME ZONE 'UTC')::date, count(*) FROM queues_itemevent "
        "WHERE event = ANY(%s) AND at >= %s AND at < %s AND queue_id IS NOT NULL GROUP BY 1, 2",
        [list(ENTERING_EVENTS), start, end],
    )
    per_queue: dict[int, dict[date, int]] = {}
    for queue_id, day, n in volumes:
        per_queue.setdefault(queue_id, {})[day] = n
    inner, params = _sql(_deciding(f))
    handle = {
        q: float(total) / n
        for q, total, n in _rows(
            f"SELECT d.q, sum(extract(epoch FROM d.handle_time)), count(d.handle_time) FROM ({inner}) d "
            "GROUP BY 1 HAVING count(d.handle_time) > 0",
            params,
        )
    }
    out: dict[Any, tuple[Any, ...]] = {}
    index = pd.DatetimeIndex(days)
    for queue_id in Queue.objects.filter(is_active=True).values_list("pk", flat=True):
        history = pd.Series([float(per_queue.get(queue_id, {}).get(d, 0)) for d in days], index=index)
        forecast = capacity.forecast_daily(history, horizon=HORIZON)
        out[queue_id] = (int(history.sum()), handle.get(queue_id), float(forecast.values.mean()))
    return out


def _labelled_scores(f: Any) -> tuple[str, list[Any]]:
    """(bucket, positive, score) of every scored item the ``decision`` truth counts in the filter's weeks."""
    from analytics.classifier_rollups import current_final_decisions, week_bounds, week_start
    from ops_platform.core.models import Policy

    start, end = week_bounds(week_start(f.start))[0], week_bounds(week_start(f.end))[1]
    decisions, params = _sql(
        current_final_decisions()
        .filter(decided_at__gte=start, decided_at__lt=end)
        .values("item_id", "is_violation", "policy_id", "decided_at")
    )
    mapped = [pk for pk, cats in Policy.objects.values_list("pk", "classifier_categories") if CATEGORY in (cats or [])]
    return (
        f"""
        SELECT least(greatest(floor(s.score * 100 + 1e-9), 0), 99)::int AS bucket,
               (d.is_violation AND d.policy_id = ANY(%s)) AS positive, s.score,
               date_trunc('week', d.decided_at)::date AS week
        FROM ({decisions}) d
        JOIN LATERAL (SELECT DISTINCT ON (model_version) (scores ->> %s)::float AS score
                      FROM routing_classifierscore c WHERE c.item_id = d.item_id AND c.backend = 'local'
                      ORDER BY model_version, id DESC) s ON true
        WHERE s.score IS NOT NULL
        """,
        [mapped, *params, CATEGORY],
    )


def naive_classifier_at(f: Any, threshold: float) -> dict[Any, tuple[Any, ...]]:
    from analytics.selectors.classifiers import threshold_edge

    inner, params = _labelled_scores(f)
    edge = threshold_edge(threshold)
    tp, fp, fn, tn = _rows(
        "SELECT count(*) FILTER (WHERE positive AND bucket >= %s), "
        "count(*) FILTER (WHERE NOT positive AND bucket >= %s), count(*) FILTER (WHERE positive AND bucket < %s), "
        "count(*) FILTER (WHERE NOT positive AND bucket < %s) "
        f"FROM ({inner}) x",
        [edge, edge, edge, edge, *params],
    )[0]
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"all": (tp, fp, fn, tn, precision, recall, fp / (fp + tn), 2 * precision * recall / (precision + recall))}


def _buckets(f: Any, *, weekly: bool = False) -> list[tuple[Any, ...]]:
    inner, params = _labelled_scores(f)
    week = "week" if weekly else "NULL::date"
    return _rows(
        f"SELECT {week}, bucket, count(*) FILTER (WHERE positive), count(*) FILTER (WHERE NOT positive), "
        f"sum(score) FROM ({inner}) x GROUP BY 1, 2",
        params,
    )


def _auprc(rows: list[tuple[Any, ...]]) -> float | None:
    """scikit-learn's average precision of the bucketed scores (what the selector's AUPRC must equal)."""
    from sklearn.metrics import average_precision_score

    y, s, weight = [], [], []
    for _, bucket, pos, neg, _ in rows:
        y += [1, 0]
        s += [bucket / 100, bucket / 100]
        weight += [pos, neg]
    if not sum(p for _, _, p, _, _ in rows):
        return None
    return float(average_precision_score(y, s, sample_weight=weight))


def naive_pr(f: Any) -> dict[Any, tuple[Any, ...]]:
    return {"all": (_auprc(_buckets(f)),)}


def naive_calibration(f: Any) -> dict[Any, tuple[Any, ...]]:
    out: dict[Any, list[float]] = {}
    for _, bucket, pos, neg, total in _buckets(f):
        b = out.setdefault(bucket // 10, [0.0, 0.0, 0.0])
        b[0] += pos
        b[1] += neg
        b[2] += total
    return {k / 10: (v[2] / (v[0] + v[1]), v[0] / (v[0] + v[1])) for k, v in out.items()}


def naive_drift(f: Any, threshold: float) -> dict[Any, tuple[Any, ...]]:
    from analytics.selectors.classifiers import threshold_edge

    edge = threshold_edge(threshold)
    weeks: dict[date, list[tuple[Any, ...]]] = {}
    for row in _buckets(f, weekly=True):
        weeks.setdefault(row[0], []).append(row)
    out = {}
    for week, rows in weeks.items():
        tp = sum(r[2] for r in rows if r[1] >= edge)
        fp = sum(r[3] for r in rows if r[1] >= edge)
        pos = sum(r[2] for r in rows)
        total = sum(r[2] + r[3] for r in rows)
        out[week] = (tp / (tp + fp) if tp + fp else None, tp / pos if pos else None, _auprc(rows),
                     sum(float(r[4]) for r in rows) / total)  # fmt: skip
    return out


# --- the figures the selectors give, keyed like the naive ones ---------------------------------------------


def _by_key(table: Any, key: str | tuple[str, ...], values: tuple[str, ...]) -> dict[Any, tuple[Any, ...]]:
    out = {}
    for d in table.as_dicts():
        k = tuple(d[c] for c in key) if isinstance(key, tuple) else d[key]
        out[k] = tuple(d[v] for v in values)
    return out


@dataclass
class Panel:
    name: str
    rollup: Callable[[Any], Any]
    naive: Callable[[Any], dict[Any, tuple[Any, ...]]]
    figures: Callable[[Any], dict[Any, tuple[Any, ...]]]  # the rollup result keyed like the naive one
    percentiles: tuple[int, ...] = ()  # positions compared within the histogram tolerance
    periods: tuple[int, ...] = (28, 90)


SCORECARD_COMPARED = ("volume", "sla_attainment", "turnaround_p90_seconds", "aht_seconds", "quality_score", "agreement")


def panels(snapshot_at: datetime) -> list[Panel]:
    from analytics.selectors import capacity as cap
    from analytics.selectors import classifiers as clf
    from analytics.selectors import operations as ops
    from analytics.selectors.vendors import MEASURES, vendor_scorecard_table

    latency_cols = ("decided", *(f"{m}_p{p}" for m in ("turnaround", "wait", "handle") for p in (50, 90, 95)))
    threshold = clf.active_threshold(CATEGORY)
    kw = {"category": CATEGORY, "backend": "local"}

    def latency(by: str) -> Panel:
        return Panel(
            f"turnaround/wait/handle p50/p90/p95 by {by}",
            lambda f: ops.latency_percentiles(f, by=by),  # type: ignore[arg-type]
            lambda f: naive_latency(f, by),
            lambda t: _by_key(t, f"{by}_id", latency_cols),
            percentiles=tuple(range(1, 10)),
        )

    def sla(by: str) -> Panel:
        return Panel(
            f"SLA attainment by {by}",
            lambda f: ops.sla_attainment(f, by=by),  # type: ignore[arg-type]
            lambda f: naive_sla(f, by),
            lambda t: _by_key(t, f"{by}_id", ("decided", "sla_counted", "within_sla", "sla_attainment")),
        )

    def scorecard_figures(t: Any) -> dict[Any, tuple[Any, ...]]:
        return {
            (d["vendor_id"], d["week_start"]): tuple(d[m] for m in SCORECARD_COMPARED)
            for d in t.as_dicts()
            if d["volume"]
        }  # fmt: skip

    assert {m for m, _ in MEASURES} >= set(SCORECARD_COMPARED)
    return [
        Panel("intake volume by source", lambda f: ops.intake_volume(f, by="source"),
              lambda f: naive_intake(f, by_source=True),
              lambda t: _by_key(t, ("day", "source"), ("received", "auto_actioned", "routed_to_review"))),
        Panel("automation rate", ops.automation_rate, lambda f: naive_intake(f, by_source=False),
              lambda t: {(d["day"],): (d["received"], d["auto_actioned"], d["routed_to_review"])
                         for d in t.as_dicts()}),
        Panel("backlog by queue x age", ops.backlog, lambda f: naive_backlog(snapshot_at),
              lambda t: _by_key(t, ("queue_id", "age_bucket"), ("items", "due_within_hour")), periods=(90,)),
        latency("queue"),
        latency("policy"),
        latency("priority"),
        sla("queue"),
        sla("vendor"),
        Panel("escalation rate by queue", ops.escalation_rate, naive_escalation,
              lambda t: _by_key(t, "queue_id", ("decided", "escalated", "escalation_rate"))),
        Panel("appeal and overturn rates by queue", ops.appeal_rates, naive_appeals,
              lambda t: _by_key(t, "queue_id", ("decided", "appeals_received", "decisions_appealed", "upheld",
                                                "overturned", "overturn_rate"))),
        Panel("reviewer productivity", ops.reviewer_productivity, naive_productivity,
              lambda t: _by_key(t, "reviewer_id", ("decisions", "productive_hours", "aht_seconds"))),
        Panel("vendor weekly scorecard", vendor_scorecard_table, naive_vendor_weeks, scorecard_figures,
              percentiles=(2,)),
        Panel("capacity plan (forecasts precomputed)", lambda f: cap.capacity_plan_table(f, memo=False), naive_capacity,
              lambda t: {r["queue_id"]: (r["entered"], r["handle_seconds"], r["forecast_mean"]) for r in t.rows}),
        Panel(f"classifier metrics at {threshold:g} ({CATEGORY})", lambda f: clf.classifier_metrics_at(f, **kw),
              lambda f: naive_classifier_at(f, threshold),
              lambda m: {"all": (m.tp, m.fp, m.fn, m.tn, m.precision, m.recall, m.fpr, m.f1)}),
        Panel("PR curve / AUPRC", lambda f: clf.classifier_pr_curve(f, **kw), naive_pr,
              lambda c: {"all": (c.auprc,)}),
        Panel("calibration", lambda f: clf.classifier_calibration(f, **kw), naive_calibration,
              lambda bins: {b.lower: (b.mean_predicted, b.observed_rate) for b in bins if b.weight}),
        Panel("weekly drift", lambda f: clf.classifier_drift(f, **kw), lambda f: naive_drift(f, threshold),
              lambda weeks: {w.week: (w.precision, w.recall, w.auprc, w.mean_score) for w in weeks if w.n}),
    ]  # fmt: skip


def mismatches(panel: Panel, got: dict[Any, tuple[Any, ...]], want: dict[Any, tuple[Any, ...]]) -> list[str]:
    from analytics.rollups import PERCENTILE_TOLERANCE

    problems = []
    if set(got) != set(want):
        problems.append(f"keys differ: only rollup {sorted(set(got) - set(want), key=str)[:5]}, "
                        f"only naive {sorted(set(want) - set(got), key=str)[:5]}")  # fmt: skip
    for key in sorted(set(got) & set(want), key=str):
        for i, (a, b) in enumerate(zip(got[key], want[key], strict=True)):
            if a is None or b is None:
                ok = a is None and b is None
            elif i in panel.percentiles:
                b = float(b)
                ok = a == 0.5 if b < 1 else abs(a / b - 1) <= PERCENTILE_TOLERANCE + 1e-6
            else:
                ok = math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
            if not ok:
                problems.append(f"{key} column {i}: rollup {a!r}, naive {b!r}")
    return problems


@dataclass
class Timing:
    cold: float
    warm: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.warm) if self.warm else self.cold


def timed(fn: Callable[[], Any], repeat: int) -> tuple[Timing, Any]:
    t0 = time.perf_counter()
    result = fn()
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t0)
    return Timing(cold, warm), result


@dataclass
class Measured:
    panel: str
    rollup: dict[int, Timing] = field(default_factory=dict)
    naive: dict[int, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def measure(
    today: date, snapshot_at: datetime, repeat: int, naive_periods: tuple[int, ...], only: list[str]
) -> list[Measured]:
    from analytics.filters import MetricFilter

    out = []
    for panel in panels(snapshot_at):
        if only and not any(text in panel.name for text in only):
            continue
        m = Measured(panel.name)
        for days in panel.periods:
            f = MetricFilter.last_days(days, today=today)
            m.rollup[days], result = timed(lambda f=f, panel=panel: panel.rollup(f), repeat)
            t = m.rollup[days]
            line = f"{panel.name}, {days} d: rollups {t.median * 1000:,.1f} ms (cold {t.cold * 1000:,.1f})"
            if days in naive_periods or panel.periods == (90,):
                t0 = time.perf_counter()
                want = panel.naive(f)
                m.naive[days] = time.perf_counter() - t0
                problems = mismatches(panel, panel.figures(result), want)
                m.problems += [f"{days} d: {p}" for p in problems]
                line += f", naive {m.naive[days]:,.2f} s" + (
                    f", {len(problems)} MISMATCHES" if problems else ", same figures"
                )
            print(line, flush=True)
            for p in m.problems[:5]:
                print(f"  MISMATCH {p}", flush=True)
        out.append(m)
    return out


# --- the run --------------------------------------------------------------------------------------------------


def machine_description(conninfo: str) -> str:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT current_setting('server_version'), current_setting('shared_buffers')").fetchone()
    version, buffers = row if row else ("?", "?")
    return (f"{len(os.sched_getaffinity(0))} CPUs ({cpu_model()}), PostgreSQL {version} (shared_buffers {buffers}, "
            f"work_mem {WORK_MEM} for this bench's sessions), Python {platform.python_version()}")  # fmt: skip


def rollups_build(now: datetime) -> dict[str, tuple[float, int]]:
    """Build every rollup once, as a backfill would; seconds and rows written per kind."""
    from analytics import models as m
    from analytics.classifier_rollups import classifier_rollups_rebuild
    from analytics.rollups import backlog_snapshot_take, rollups_rebuild

    start, end = (now - timedelta(days=DAYS + 1)).date(), now.date()
    out = {}
    t0 = time.perf_counter()
    days = rollups_rebuild(start, end)
    daily = (m.OpsDecisionDaily, m.OpsIntakeDaily, m.OpsQueueDaily, m.OpsReviewerDaily, m.OpsAppealDaily,
             m.QaSampleDaily, m.GoldenDaily)  # fmt: skip
    rows = sum(model.objects.count() for model in daily)
    out[f"operations ({days} days)"] = (time.perf_counter() - t0, rows)
    print(f"  operations rollups: {out[f'operations ({days} days)'][0]:,.1f} s, {rows:,} rows", flush=True)
    t0 = time.perf_counter()
    weeks = classifier_rollups_rebuild(start, end)
    out[f"classifier ({len(weeks)} weeks)"] = (time.perf_counter() - t0, m.ClassifierRollup.objects.count())
    print(f"  classifier rollups: {time.perf_counter() - t0:,.1f} s", flush=True)
    t0 = time.perf_counter()
    n = backlog_snapshot_take(now=now)
    out["backlog snapshot"] = (time.perf_counter() - t0, n)
    return out | capacity_warm()


def capacity_warm() -> dict[str, tuple[float, int]]:
    """What the 30-minute task does: fit every preset period's capacity forecasts into the cache."""
    from analytics.selectors.capacity import capacity_forecasts_warm

    t0 = time.perf_counter()
    plans = capacity_forecasts_warm()
    print(f"  capacity forecasts: {time.perf_counter() - t0:,.1f} s for {plans} queue plans", flush=True)
    return {"capacity forecasts (the warm task)": (time.perf_counter() - t0, plans)}


def latency_backfill(now: datetime) -> dict[str, tuple[float, int]]:
    """A database built before the per-dimension latency rollup existed gets it from its decision rows."""
    from analytics.models import OpsLatencyDaily
    from analytics.rollups import latency_rollups_rebuild

    if OpsLatencyDaily.objects.exists():
        return {}
    t0 = time.perf_counter()
    n = latency_rollups_rebuild((now - timedelta(days=DAYS + 1)).date(), now.date())
    print(f"  latency rollup derived from the decision rows: {time.perf_counter() - t0:,.1f} s, {n:,} rows", flush=True)
    return {"latency per dimension (derived from the decision rows)": (time.perf_counter() - t0, n)}


def reused(conninfo: str) -> tuple[Seeded, datetime]:
    """What an earlier run seeded, counted from the database, and the time it seeded at (its backlog snapshot)."""
    from analytics.models import OpsBacklogSnapshot

    seeded = Seeded()
    with psycopg.connect(conninfo) as conn:
        for table in TABLES:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            seeded.rows[table] = row[0] if row else 0
        row = conn.execute(
            "SELECT count(*) FROM queues_reviewitem WHERE state = 'decided' AND appeal_of_id IS NULL"
        ).fetchone()
        seeded.decisions = row[0] if row else 0
    taken = OpsBacklogSnapshot.objects.order_by("-taken_at").values_list("taken_at", flat=True).first()
    assert taken is not None
    return seeded, taken


def report(args: argparse.Namespace, conninfo: str, seeded: Seeded, built: dict[str, tuple[float, int]],
           measured: list[Measured], raw_decisions: int) -> tuple[str, bool]:  # fmt: skip
    rows = seeded.rows
    all_rows = sum(rows.values())
    r = Report("Dashboard benchmark: panels from rollups against the naive computation over raw rows")
    r.add("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    r.add("machine", machine_description(conninfo))
    r.add("data", f"{seeded.decisions:,} decided items over {DAYS} days ({raw_decisions:,} decision rows, appeals "
                  f"included); {rows['queues_reviewitem']:,} items (auto-actioned, open and appeal ones too), "
                  f"{rows['queues_itemevent']:,} item events "
                  "(queued/claimed/decided/escalated/auto_actioned for every item), "
                  f"{rows['routing_classifierscore']:,} scores, {rows['qa_qasample']:,} closed QA samples with "
                  f"re-review and ground truth; 6 queues, 7 policies, 2 vendors + in-house, "
                  f"{3 * REVIEWERS_PER_TEAM} reviewers")  # fmt: skip
    if args.reuse:
        r.add("**seeding (the reference rate)**", "reused a database an earlier run seeded and built (that run's "
                                                  "log has its seeding and rollup-build figures)")  # fmt: skip
    else:
        r.add("**seeding (the reference rate)**",
              f"COPY {all_rows:,} rows ({seeded.bytes / 1e9:,.2f} GB of COPY text) in {seeded.seconds:,.1f} s: "
              f"**{all_rows / seeded.seconds:,.0f} rows/s**, {seeded.decisions / seeded.seconds:,.0f} decided "
              f"items/s (row generation on a thread alongside: {seeded.generate_seconds:,.1f} s); then secondary "
              f"indexes {seeded.index_seconds:,.1f} s, VACUUM ANALYZE {seeded.analyze_seconds:,.1f} s")  # fmt: skip
    for kind, (seconds, n) in built.items():
        if kind.startswith("backlog"):
            r.add(f"rollup build: {kind}", f"{seconds * 1000:,.0f} ms, {n} rows")
        elif kind.startswith("capacity"):
            r.add(f"rollup build: {kind}", f"{seconds:,.1f} s, {n} queue plans fitted and cached")
        else:
            r.add(f"rollup build: {kind}", f"{seconds:,.1f} s, {n:,} rollup rows written; "
                                           f"{seeded.decisions / seconds:,.0f} decided items/s")  # fmt: skip
    r.add("timing", f"rollups: median of {args.repeat} warm runs (the first, cold, run in brackets); naive: one run "
                    "each, its figures compared with the rollups' (percentiles within the histograms' "
                    "sqrt(1.02) - 1 < 1%, everything else exact)")  # fmt: skip
    ok, met = True, True
    for m in measured:
        parts = []
        for days, t in m.rollup.items():
            part = f"{days} d: **{t.median * 1000:,.1f} ms** ({t.cold * 1000:,.0f})"
            if days in m.naive:
                part += f" vs naive {m.naive[days]:,.2f} s (x{m.naive[days] / t.median:,.0f})"
            parts.append(part)
        worst = max(t.median for t in m.rollup.values())
        hit = worst < TARGET_SECONDS
        met &= hit
        ok &= not m.problems
        check = "same figures" if not m.problems else f"**{len(m.problems)} MISMATCHES**: {m.problems[0]}"
        r.add(m.panel, "; ".join(parts) + f"; {'met' if hit else 'MISSED'}; {check}")
    r.add("target", f"every panel under {TARGET_SECONDS:g} s from rollups: " + ("met" if met else "MISSED"))
    return r.render(), ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=10_000_000, help="decided items to seed")
    parser.add_argument("--repeat", type=int, default=5, help="warm runs per panel and period")
    parser.add_argument("--naive-periods", default="28,90", help="periods (days) to run the naive computation for")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bench_dashboard")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    parser.add_argument("--panels", nargs="*", default=[], metavar="TEXT",
                        help="time only the panels whose name contains one of these")  # fmt: skip
    parser.add_argument("--reuse", action="store_true",
                        help="time the panels on a database an earlier run seeded and built (kept with --keep, or "
                             "left by a run stopped after its build): no seeding, no rollup build; the database is "
                             "kept")  # fmt: skip
    args = parser.parse_args()
    if args.reuse:
        args.keep = True
    naive_periods = tuple(int(p) for p in args.naive_periods.split(",") if p)
    conninfo, dbname, admin = scratch_database(args.database_url)
    if not args.reuse:
        print(f"recreating database {dbname} and migrating …", flush=True)
        database_recreate(admin, dbname)
    try:
        env = app_env(args.database_url, drop=("OPENAI_API_KEY",), CELERY_BROKER_URL="", LOG_LEVEL="WARNING")
        # A reused database gets only analytics' new rollup tables (the other apps' migrations may rewrite millions
        # of rows); everything else is as the earlier run left it.
        manage(env, "migrate", *(["analytics"] if args.reuse else []), "--noinput")
        django_setup(env)
        from django.db import connection

        from analytics.models import OpsBacklogSnapshot, OpsDecisionDaily

        OpsDecisionDaily.objects.exists()  # the tables are there
        if args.reuse:
            seeded, now = reused(conninfo)
            print(f"reusing {dbname}: {seeded.decisions:,} decided items, seeded at {now:%Y-%m-%d %H:%M} UTC",
                  flush=True)  # fmt: skip
        else:
            world = world_create()
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            print(f"seeding {args.decisions:,} decided items by COPY …", flush=True)
            seeded = seed(conninfo, world, args.decisions, now)
            print(f"seeded in {seeded.seconds:,.1f} s; indexes {seeded.index_seconds:,.1f} s, "
                  f"VACUUM ANALYZE {seeded.analyze_seconds:,.1f} s", flush=True)  # fmt: skip
        with connection.cursor() as cur:
            cur.execute(f"SET work_mem = '{WORK_MEM}'")
            cur.execute("SELECT count(*) FROM queues_decision")
            raw_decisions = cur.fetchone()[0]  # type: ignore[index]
        if args.reuse:
            assert OpsBacklogSnapshot.objects.exists(), "the reused database has no rollups: run without --reuse"
            built = latency_backfill(now) | capacity_warm()
        else:
            print("building the rollups …", flush=True)
            built = rollups_build(now)
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute("VACUUM (ANALYZE)")  # the rollup tables, as autovacuum would
        print("timing the panels …", flush=True)
        measured = measure(now.date(), now, args.repeat, naive_periods, args.panels)
        text, ok = report(args, conninfo, seeded, built, measured, raw_decisions)
        print("\n" + text)
        if not args.no_write:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(text)
            print(f"written to {RESULTS.relative_to(ROOT)}")
        if not ok:
            print("FAILED: a panel's figures from the rollups differ from the naive computation")
        return 0 if ok else 1
    finally:
        scratch_release(admin, dbname, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
