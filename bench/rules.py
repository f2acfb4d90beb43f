"""Routing rules: rows/s of a realistic 50-rule intake set (compiled, interpreted, vectorized) and the time to
backtest it over a million stored items in PostgreSQL, against a raw COPY of the same columns.

Self-contained: creates its own database, migrates it, creates the queues, policies and rule sets through the
ORM, COPYs in the items, their scores and some human decisions, measures, checks, cleans up.

    .venv/bin/python bench/rules.py [--items 1000000] [--rows 200000] [--decisions 50000] [--profile] [--keep]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import math
import os
import pstats
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from benchlib import (
    ROOT,
    Report,
    app_env,
    database_recreate,
    django_setup,
    machine_busy,
    machine_description,
    manage,
    process_cpu,
    scratch_database,
    scratch_release,
)
from psycopg import sql

RESULTS = ROOT / "bench" / "results" / "rules.md"
PROFILE = RESULTS.with_name("rules-profile.txt")
DAYS = 14

# --- the rule sets ----------------------------------------------------------------------------------

# Queues the rules route to, beside the demo world's (fixtures.demo_world.QUEUES).
EXTRA_QUEUES = [
    ("violence", "Violence & graphic content"),
    ("adult-content", "Adult content"),
    ("dm-safety", "Direct-message reports"),
    ("marketplace", "Marketplace trust"),
    ("live", "Live & stories"),
    ("vip", "High-reach accounts"),
    ("lang-pt", "Portuguese reports"),
    ("lang-es", "Spanish reports"),
    ("lang-de", "German reports"),
    ("lang-ja", "Japanese reports"),
    ("eu-dsa", "EU notices (DSA)"),
]


@dataclass(frozen=True)
class RuleText:
    """One rule as policy staff would write it. ``target``: the queue (route, escalate, an auto-action's
    fallback); for an auto-action also ``policy``/``enforcement``/``cap``; for a tag rule ``tags``."""

    name: str
    action: str
    condition: str
    target: str = ""
    policy: str = ""
    enforcement: str = ""
    cap: int | None = None
    priority: int = 0
    tags: tuple[str, ...] = ()


def _route(name: str, queue: str, condition: str, priority: int = 0) -> RuleText:
    return RuleText(name, "route", condition, target=queue, priority=priority)


def _escalate(name: str, queue: str, condition: str, priority: int = 0) -> RuleText:
    return RuleText(name, "escalate", condition, target=queue, priority=priority)


def _auto(name: str, policy: str, enforcement: str, cap: int, fallback: str, condition: str) -> RuleText:
    return RuleText(name, "auto_action", condition, target=fallback, policy=policy, enforcement=enforcement, cap=cap)


def _tag(name: str, tags: tuple[str, ...], condition: str) -> RuleText:
    return RuleText(name, "tag", condition, tags=tags)


# The draft under test: 8 tag rules (all evaluated on every item) and 42 deciding rules, most of which a benign
# item fails, so the typical item is checked against every rule and lands in the default queue.
DRAFT_RULES: list[RuleText] = [
    _tag("tag-verified", ("verified-author",), "metadata.verified == true"),
    _tag("tag-high-reach", ("high-reach",), "metadata.followers >= 100000"),
    _tag("tag-repeat-offender", ("repeat-offender",), "author.prior_violations >= 3"),
    _tag("tag-mass-reported", ("mass-reported",), "report_count >= 10"),
    _tag("tag-new-account", ("new-account",), "metadata.account_age_days < 7"),
    _tag("tag-civic", ("civic",), 'text icontains "election" or text icontains "ballot"'),
    _tag("tag-dm-sexual", ("dm-sexual",), 'surface == "dm" and score.sexual >= 0.3'),
    _tag("tag-link", ("has-link",), 'text contains "http://" or text contains "https://"'),
    _escalate(
        "violent-hate-threat",
        "tier-2",
        "score.hate_threatening >= 0.85 or (score.hate >= 0.9 and score.violence >= 0.8)",
    ),
    _escalate("threat-high-reach", "tier-2", "score.violence >= 0.85 and metadata.followers >= 100000", 30),
    _route("cs-adjacent-dm", "child-safety", 'score.sexual_minors >= 0.25 and surface in ["dm", "comment"]', 50),
    _route("cs-adjacent-report", "child-safety", 'kind == "user_report" and score["sexual/minors"] >= 0.15', 50),
    _escalate(
        "self-harm-crisis",
        "self-harm",
        'score.self_harm >= 0.8 or text icontains "kill myself" or text icontains "end it all"',
        60,
    ),
    _auto(
        "self-harm-support",
        "self-harm",
        "support-resources",
        2000,
        "self-harm",
        'score.self_harm >= 0.6 and score.self_harm < 0.8 and not kind == "user_report" '
        "and author.prior_violations == 0",
    ),
    _route("self-harm-review", "self-harm", "score.self_harm >= 0.4", 20),
    _route("graphic-news", "tier-2", "score.violence_graphic >= 0.7 and metadata.newsworthy == true"),
    _auto(
        "graphic-violence-screen",
        "graphic-violence",
        "restrict-reach",
        5000,
        "violence",
        'score.violence_graphic >= 0.95 and surface in ["post", "story"]',
    ),
    _route("graphic-violence", "violence", "score.violence_graphic >= 0.6"),
    _auto(
        "threat-repeat-remove",
        "violent-threats",
        "remove",
        1000,
        "violence",
        "score.violence >= 0.97 and author.prior_violations >= 2 and not metadata.verified == true",
    ),
    _route(
        "violent-threats", "violence", 'score.violence >= 0.7 or (kind == "user_report" and score.violence >= 0.5)', 10
    ),
    _auto(
        "hate-remove",
        "hateful-conduct",
        "remove",
        3000,
        "hate-harassment",
        'score.hate >= 0.96 and language in ["en", "es", "pt-BR", "de"] and report_count >= 1',
    ),
    _route("hate-repeat", "hate-harassment", "score.hate >= 0.6 and author.prior_violations >= 2", 20),
    _route("hate", "hate-harassment", "score.hate >= 0.75"),
    _route("hate-reported", "hate-harassment", 'kind == "user_report" and score.hate >= 0.45'),
    _auto(
        "harassment-dm-warn",
        "harassment",
        "warn",
        2000,
        "dm-safety",
        'score.harassment >= 0.95 and surface == "dm" and report_count >= 2',
    ),
    _escalate("harassment-pile-on", "tier-2", "score.harassment >= 0.7 and report_count >= 20", 20),
    _route(
        "harassment",
        "hate-harassment",
        'score.harassment >= 0.8 or (score.harassment >= 0.6 and surface in ["comment", "dm"])',
    ),
    _route("harassment-keywords", "hate-harassment", 'text icontains "kys" or text icontains "kill yourself"'),
    _auto(
        "adult-screen",
        "adult-sexual",
        "restrict-reach",
        10000,
        "adult-content",
        'score.sexual >= 0.97 and surface in ["post", "story", "profile"] and not metadata.verified == true',
    ),
    _route(
        "sexual-solicitation",
        "adult-content",
        'score.sexual >= 0.7 and (text icontains "dm me" or text icontains "telegram" or text icontains "onlyfans")',
        10,
    ),
    _route("sexual", "adult-content", "score.sexual >= 0.85"),
    _route("sexual-dm-report", "adult-content", 'surface == "dm" and kind == "user_report" and score.sexual >= 0.4'),
    _auto(
        "crypto-scam-remove",
        "fraud-scams",
        "remove",
        5000,
        "fraud-spam",
        '(text icontains "double your money" or text icontains "crypto giveaway") and metadata.account_age_days < 30',
    ),
    _route("scam-policy-score", "fraud-spam", "score.policy_fraud_scams >= 0.8"),
    _auto(
        "spam-policy-score",
        "spam",
        "restrict-reach",
        20000,
        "fraud-spam",
        "score.policy_spam >= 0.9 and not metadata.verified == true",
    ),
    _route(
        "scam-keywords",
        "fraud-spam",
        'text icontains "whatsapp me" or text icontains "guaranteed return" or text icontains "investment opportunity"',
    ),
    _route(
        "spam-links-new-account",
        "fraud-spam",
        'metadata.account_age_days < 2 and text contains "https://" and surface in ["comment", "dm"]',
    ),
    _route(
        "marketplace-scam",
        "marketplace",
        'source == "marketplace" and (text icontains "western union" or text icontains "gift card" '
        "or report_count >= 3)",
    ),
    _escalate("mass-reported", "tier-2", "report_count >= 25", 40),
    _route("reported-vip", "vip", 'kind == "user_report" and metadata.followers >= 500000', 30),
    _route(
        "verified-high-risk",
        "vip",
        "metadata.verified == true and (score.hate >= 0.5 or score.harassment >= 0.5 or score.violence >= 0.5)",
    ),
    _route(
        "repeat-offender",
        "tier-2",
        "author.prior_violations >= 5 and (score.hate >= 0.3 or score.harassment >= 0.3 or score.violence >= 0.3 "
        "or score.sexual >= 0.3)",
    ),
    _route("reported-dm", "dm-safety", 'kind == "user_report" and surface == "dm"'),
    _route(
        "live-risk", "live", 'source == "live" and (score.hate >= 0.4 or score.violence >= 0.4 or score.sexual >= 0.5)'
    ),
    _route("lang-pt-reports", "lang-pt", 'language == "pt-BR" and kind == "user_report"'),
    _route("lang-es-reports", "lang-es", 'language in ["es", "es-MX"] and kind == "user_report"'),
    _route(
        "lang-de-reports",
        "lang-de",
        'language == "de" and (kind == "user_report" or metadata.country in ["DE", "AT", "CH"] and score.hate >= 0.3)',
    ),
    _route("lang-ja-reports", "lang-ja", 'language == "ja" and kind == "user_report"'),
    _route("eu-notice", "eu-dsa", 'metadata.country in ["DE", "FR", "ES", "IT", "NL", "PL"] and report_count >= 5', 10),
    _route("unscored-reports", "general", 'not scored and kind == "user_report"', 10),
]

# The active version the draft is compared with: a few broad thresholds.
BASELINE_RULES: list[RuleText] = [
    _route("hate", "hate-harassment", "score.hate >= 0.8"),
    _route("harassment", "hate-harassment", "score.harassment >= 0.8"),
    _route("self-harm", "self-harm", "score.self_harm >= 0.5", 20),
    _route("violence", "violence", "score.violence >= 0.8 or score.violence_graphic >= 0.8"),
    _route("sexual", "adult-content", "score.sexual >= 0.9"),
    _escalate("mass-reported", "tier-2", "report_count >= 25", 40),
    _route("crypto-scam", "fraud-spam", 'text icontains "double your money"'),
]

# --- generated items ---------------------------------------------------------------------------------

CATEGORIES = [
    "hate",
    "harassment",
    "violence",
    "self-harm",
    "sexual",
    "sexual/minors",
    "hate/threatening",
    "violence/graphic",
]
# How often each category is the one an elevated item is elevated in.
ELEVATED_WEIGHTS = [0.20, 0.30, 0.14, 0.07, 0.20, 0.01, 0.03, 0.05]
VOCABULARY = {
    "en": (
        "the this is not what I said about your post and you know it honestly people like you should stop buy cheap "
        "followers now click link in bio free great photo love it thanks for sharing anyone else seeing this report "
        "spam account again meeting tomorrow at noon see you there lol that was hilarious worst service ever never "
        "again game last night was wild who is coming new recipe turned out better than expected my dog ate it"
    ),
    "pt-BR": (
        "olha só que absurdo ninguém merece isso compre agora promoção imperdível link na bio ótimo trabalho "
        "parabéns pessoal denunciem essa conta golpe pix grátis amanhã às dez nos vemos lá"
    ),
    "es": (
        "esto es increíble gracias por compartir oferta limitada haz clic aquí cuenta falsa estafa nunca más pésimo "
        "servicio nos vemos mañana qué risa denuncien este perfil por favor"
    ),
    "de": (
        "das ist wirklich unglaublich danke fürs teilen jetzt kaufen gratis gewinnspiel link im profil betrug "
        "gefälschtes konto bis morgen schlechtester service überhaupt bitte melden"
    ),
    "ja": "これは ひどい 投稿 です 今すぐ クリック 無料 プレゼント 詐欺 アカウント 通報 ありがとう また 明日",
}
WORDS = {language: text.split() for language, text in VOCABULARY.items()}
LANGUAGES = ["en"] * 6 + ["pt-BR", "pt-BR", "es", "es", "de", "ja"]
SURFACES = ["post", "post", "post", "comment", "comment", "comment", "dm", "profile", "listing", "story"]
COUNTRIES = ["US", "BR", "MX", "DE", "JP", "IN", "GB", "FR", "ES", "ID", "AT", "IT", "NL", "PL"]
REASONS = ["spam", "harassment", "hate_speech", "scam", "nudity", "violence", "impersonation", "self_harm"]
# Phrases rules look for, which a small share of texts carry.
PHRASES = [
    "kill yourself",
    "KYS",
    "kill myself",
    "end it all",
    "double your money",
    "crypto giveaway",
    "DM me",
    "telegram",
    "WhatsApp me",
    "guaranteed return",
    "investment opportunity",
    "western union",
    "gift card",
    "election",
    "ballot",
    "onlyfans",
]


@dataclass
class Items:
    """Generated items in arrival order, as columns. ``scores`` holds each item's stored scores (JSON object)."""

    kind: list[str]
    source: list[str]
    surface: list[str]
    language: list[str]
    text: list[str]
    author: list[str]
    report_count: np.ndarray
    reasons: list[list[str]]
    media: np.ndarray
    metadata: list[dict[str, Any]]
    scores: list[dict[str, float]]
    offset_seconds: np.ndarray  # from the start of the period, ascending

    def __len__(self) -> int:
        return len(self.kind)

    def head(self, count: int) -> Items:
        return Items(*(getattr(self, f.name)[:count] for f in fields(self)))


def scores_generate(rng: np.random.Generator, reported: np.ndarray) -> np.ndarray:
    """(n, 8) probabilities: low for most items; one category (and its parent) high for a few; reports more often."""
    n = len(reported)
    values = rng.beta(0.6, 40.0, size=(n, len(CATEGORIES)))
    elevated = rng.random(n) < np.where(reported, 0.25, 0.06)
    rows = np.flatnonzero(elevated)
    which = rng.choice(len(CATEGORIES), size=len(rows), p=ELEVATED_WEIGHTS)
    high = rng.beta(2.0, 1.4, size=len(rows))
    values[rows, which] = high
    parent = {CATEGORIES.index(c): CATEGORIES.index(p) for c, p in CATEGORY_PARENTS.items()}
    for child, mother in parent.items():
        hit = rows[which == child]
        values[hit, mother] = np.maximum(values[hit, mother], high[which == child] * rng.uniform(0.7, 1.0, len(hit)))
    return np.round(values, 4)


CATEGORY_PARENTS = {"hate/threatening": "hate", "violence/graphic": "violence", "sexual/minors": "sexual"}


def items_generate(count: int, *, seed: int) -> Items:
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    reported = nprng.random(count) < 0.15
    report_count = np.where(reported, nprng.geometric(0.3, count), 0)
    matrix = scores_generate(nprng, reported)
    # An older model version did not score the sub-categories: 2% of score rows lack them (NaN in rules).
    partial = nprng.random(count) < 0.02
    followers = np.minimum(nprng.lognormal(5.0, 2.2, count).astype(np.int64), 50_000_000)
    age = nprng.exponential(400.0, count).astype(np.int64)
    media = np.where(nprng.random(count) < 0.2, nprng.integers(1, 5, count), 0)
    offsets = np.sort(nprng.uniform(0, DAYS * 86400 - 1, count))

    items = Items([], [], [], [], [], [], report_count, [], media, [], [], offsets)
    for i in range(count):
        surface = rng.choice(SURFACES)
        language = rng.choice(LANGUAGES)
        source = "messaging" if surface == "dm" else "marketplace" if surface == "listing" else "app"
        if surface == "story" and rng.random() < 0.4:
            source = "live"
        words = rng.choices(WORDS[language], k=rng.randint(6, 50))
        roll = rng.random()
        if roll < 0.04:
            words.insert(rng.randrange(len(words)), rng.choice(PHRASES))
        elif roll < 0.14:
            words.append(f"https://example.com/p/{i:x}")
        metadata: dict[str, Any] = {
            "followers": int(followers[i]),
            "client": rng.choice(["ios", "android", "web"]),
            "verified": rng.random() < 0.02,
            "account_age_days": int(age[i]),
        }
        if rng.random() > 0.03:
            metadata["country"] = rng.choice(COUNTRIES)
        if rng.random() < 0.005:
            metadata["newsworthy"] = True
        row = matrix[i]
        if partial[i]:
            scores = {c: float(v) for c, v in zip(CATEGORIES[:5], row[:5], strict=True)}
        else:
            scores = {c: float(v) for c, v in zip(CATEGORIES, row, strict=True)}
        items.kind.append("user_report" if reported[i] else "content")
        items.source.append(source)
        items.surface.append(surface)
        items.language.append(language)
        items.text.append(" ".join(words))
        items.author.append(f"u{int(rng.paretovariate(1.2) * 1000)}")
        items.reasons.append(rng.sample(REASONS, rng.randint(1, 3)) if reported[i] else [])
        items.metadata.append(metadata)
        items.scores.append(scores)
    return items


@dataclass(frozen=True)
class Decided:
    """A final human decision on item ``index``."""

    index: int
    is_violation: bool
    policy: str
    action: str


# The policy people cite for an item, by its highest category.
POLICY_OF = {
    "hate": "hateful-conduct",
    "harassment": "harassment",
    "violence": "violent-threats",
    "self-harm": "self-harm",
    "sexual": "adult-sexual",
    "sexual/minors": "child-safety",
    "hate/threatening": "violent-hate",
    "violence/graphic": "graphic-violence",
}


def decisions_generate(items: Items, count: int, *, seed: int) -> list[Decided]:
    """Final decisions on ``count`` distinct items: mostly violations where a score is high, rarely otherwise."""
    rng = random.Random(seed + 1)
    chosen = sorted(rng.sample(range(len(items)), min(count, len(items))))
    found = []
    for index in chosen:
        scores = items.scores[index]
        top = max(scores, key=scores.__getitem__)
        violation = rng.random() < (0.85 if scores[top] >= 0.5 else 0.08)
        policy = POLICY_OF[top] if scores[top] >= 0.5 else rng.choice(["spam", "fraud-scams", "harassment"])
        action = "remove" if violation else "no-action"
        found.append(Decided(index, violation, policy, action))
    return found


def author_history(items: Items, decided: Sequence[Decided]) -> dict[tuple[str, str], tuple[int, int]]:
    """(source, author) -> (violations, decisions): what ``features.author_history`` counts in the database."""
    history: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for d in decided:
        counts = history[(items.source[d.index], items.author[d.index])]
        counts[0] += int(d.is_violation)
        counts[1] += 1
    return {key: (v, r) for key, (v, r) in history.items()}


def row_of(items: Items, i: int, score_names: dict[str, str], history: dict[tuple[str, str], tuple[int, int]]) -> dict:
    """Item ``i`` as ``routing.rules.features.item_rows`` builds it (checked against it on stored items)."""
    violations, reviews = history.get((items.source[i], items.author[i]), (0, 0))
    stored = items.scores[i]
    row: dict[str, Any] = {
        "kind": items.kind[i],
        "source": items.source[i],
        "surface": items.surface[i],
        "language": items.language[i],
        "text": items.text[i],
        "report_count": float(items.report_count[i]),
        "media_count": float(items.media[i]),
        "scored": True,
        "author.prior_violations": float(violations),
        "author.prior_reviews": float(reviews),
    }
    for name, raw in score_names.items():
        value = stored.get(raw)
        row[name] = float(value) if value is not None else math.nan
    for key, value in items.metadata[i].items():
        row[f"metadata.{key}"] = value
    return row


# --- the world ---------------------------------------------------------------------------------------


@dataclass
class World:
    queues: dict[str, Any]
    policies: dict[str, Any]
    actions: dict[str, Any]
    reviewer: Any
    draft: Any
    baseline: Any


def world_create() -> World:
    """Actions, policies and queues of the demo world plus the bench's queues; a reviewer; both rule sets."""
    from fixtures.demo_world import ACTIONS, POLICIES, QUEUES
    from ops_platform.core.models import EnforcementAction, Policy, User
    from queues.models import Queue
    from routing.models import Rule, RuleSet, RuleSetKind, RuleSetStatus
    from routing.rules.lifecycle import RuleData, rule_validate

    actions = {
        slug: EnforcementAction.objects.create(slug=slug, name=name, strength=strength, description=description)
        for slug, name, strength, description in ACTIONS
    }
    policies = {}
    for spec in POLICIES:
        policy = Policy.objects.create(
            slug=spec.slug,
            name=spec.name,
            severity=spec.severity,
            guidelines=spec.guidelines,
            classifier_categories=[str(c) for c in spec.categories],
            human_review_only=spec.human_review_only,
        )
        policy.enforcement_actions.set([actions["no-action"], *(actions[a] for a in spec.actions)])
        policies[spec.slug] = policy
    queues = {
        spec.slug: Queue.objects.create(
            slug=spec.slug,
            name=spec.name,
            sla=timedelta(hours=spec.sla_hours),
            is_default_intake=spec.is_default_intake,
            is_sensitive=spec.is_sensitive,
            is_restricted=spec.is_restricted,
        )
        for spec in QUEUES
    }
    queues.update({slug: Queue.objects.create(slug=slug, name=name) for slug, name in EXTRA_QUEUES})
    reviewer = User.objects.create_user(username="bench.reviewer")
    author = User.objects.create_user(username="bench.policy")

    def rule_set(version: int, status: str, texts: list[RuleText], **extra: Any) -> Any:
        rs = RuleSet.objects.create(
            kind=RuleSetKind.INTAKE,
            version=version,
            status=status,
            title=f"bench v{version}",
            default_queue=queues["general"],
            created_by=author,
            **extra,
        )
        rules = []
        for position, t in enumerate(texts, start=1):
            data = RuleData(
                name=t.name,
                condition=t.condition,
                action=t.action,
                queue_id=queues[t.target].pk if t.target else None,
                priority=t.priority,
                policy_id=policies[t.policy].pk if t.policy else None,
                enforcement_action_id=actions[t.enforcement].pk if t.enforcement else None,
                daily_cap=t.cap,
                tags=list(t.tags),
            )
            rule_validate(RuleSetKind.INTAKE, data)  # every rule is one the editor would accept
            rules.append(
                Rule(
                    rule_set=rs,
                    position=position,
                    name=data.name,
                    condition=data.condition,
                    action=data.action,
                    queue_id=data.queue_id,
                    priority=data.priority,
                    policy_id=data.policy_id,
                    enforcement_action_id=data.enforcement_action_id,
                    daily_cap=data.daily_cap,
                    tags=data.tags,
                )
            )
        Rule.objects.bulk_create(rules)
        return rs

    now = datetime.now(UTC)
    baseline = rule_set(1, RuleSetStatus.ACTIVE, BASELINE_RULES, activated_at=now, activated_by=author)
    draft = rule_set(2, RuleSetStatus.DRAFT, DRAFT_RULES, based_on=baseline)
    return World(queues, policies, actions, reviewer, draft, baseline)


# --- (a) rows per second -----------------------------------------------------------------------------


@contextmanager
def one_core() -> Iterator[int]:
    """Pin this thread to one CPU while the block runs."""
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def columns_of(rows: Sequence[dict[str, Any]], names: set[str]) -> dict[str, Any]:
    """The rows as ``columns.item_columns`` shapes them: Categorical text, float numbers, Mixed metadata."""
    from routing.rules.language import Categorical, Mixed

    columns: dict[str, Any] = {}
    for name in sorted(names):
        values = [row.get(name) for row in rows]
        if name in ("kind", "source", "surface", "language", "text"):
            columns[name] = Categorical.from_values(values)
        elif name == "scored":
            columns[name] = np.array(values, dtype=bool)
        elif name.startswith("metadata."):
            columns[name] = Mixed.from_values(values)
        else:
            columns[name] = np.array([math.nan if v is None else v for v in values], dtype=float)
    return columns


@dataclass
class RowRates:
    rows: int
    cpu: int
    decide: float
    first_match: float
    interpreted: float
    interpreted_rows: int
    columns_build: float
    route_columns: float
    evaluate_columns: float
    matched: Counter[str] = field(default_factory=Counter)
    disagreements: int = 0


def measure_rows(program: Any, rows: list[dict[str, Any]], *, interpreted_rows: int, repeat: int) -> RowRates:
    from routing.rules.backtest import route_columns
    from routing.rules.columns import ItemColumns
    from routing.rules.engine import child_safety_flagged
    from routing.rules.language import compile_rules, evaluate_columns

    decide = program.decide
    first_match = program.compiled_terminal.first_match
    interpreted = program.decide_interpreted
    sample = rows[:interpreted_rows]

    def per_second(fn: Callable[[dict[str, Any]], Any], batch: list[dict[str, Any]], times: int) -> float:
        # A plain loop that keeps nothing: holding 200,000 results would make the garbage collector walk
        # every row dict again and again, which live routing (500 items a batch) never does.
        def run() -> None:
            for r in batch:
                fn(r)

        return len(batch) / min(timed(run)[0] for _ in range(times))

    with one_core() as cpu:
        decide_rate = per_second(decide, rows, repeat)
        first_rate = per_second(first_match, rows, repeat)
        interp_rate = per_second(interpreted, sample, 1)
        # Fresh columns for each: the text column keeps its casefolded form once made.
        build_s, columns = timed(lambda: columns_of(rows, set(program.names)))
        size = len(rows)
        data = ItemColumns(np.arange(size, dtype=np.int64), np.zeros(size, dtype=np.int32), columns)
        route_s, routed = timed(lambda: route_columns(program, data, queue_slugs={}, default_slug="general"))
        columns = columns_of(rows, set(program.names))
        eval_s, masks = timed(lambda: [evaluate_columns(c, columns, size) for c in program.conditions])

    # One meaning three ways: the compiled program, the tree walk and the columns agree on every row.
    outcomes = [decide(r) for r in rows]
    interp_out = [interpreted(r) for r in sample]
    terminal = program.terminal
    compiled = [terminal[i] if i >= 0 else -1 for i in (first_match(r) for r in rows)]
    disagreements = sum(1 for a, b in zip(compiled[: len(sample)], interp_out, strict=True) if a != b)
    guard = np.array([child_safety_flagged(r) for r in rows], dtype=bool)
    expected = np.where(guard, -1, np.array(compiled, dtype=np.int32))
    disagreements += int((routed.rule_index != expected).sum())
    # Every condition's truth, compiled, against its mask from the columns.
    every = compile_rules(program.conditions).all_matches
    truth = np.zeros((len(program.conditions), size), dtype=bool)
    for j, r in enumerate(rows):
        truth[every(r), j] = True
    disagreements += sum(int((masks[k] != truth[k]).sum()) for k in range(len(program.conditions)))
    return RowRates(
        rows=size,
        cpu=cpu,
        decide=decide_rate,
        first_match=first_rate,
        interpreted=interp_rate,
        interpreted_rows=len(sample),
        columns_build=build_s,
        route_columns=size / route_s,
        evaluate_columns=size / eval_s,
        matched=Counter(o.matched for o in outcomes),
        disagreements=disagreements,
    )


# --- (b) seeding and the backtest ---------------------------------------------------------------------

ITEM_COLUMNS = [
    "source",
    "external_id",
    "kind",
    "text",
    "media_urls",
    "author_ref",
    "surface",
    "language",
    "metadata",
    "report_reasons",
    "report_count",
    "state",
    "queue_id",
    "priority",
    "tags",
    "required_reviews",
    "received_at",
    "triaged_at",
    "queued_at",
    "decided_at",
]
SCORE_COLUMNS = ["item_id", "backend", "model", "model_version", "prompt_version", "scores", "detail", "created_at"]
DECISION_COLUMNS = [
    "item_id",
    "reviewer_id",
    "queue_id",
    "policy_id",
    "action_id",
    "is_violation",
    "rationale",
    "claimed_at",
    "decided_at",
    "handle_time",
    "is_final",
]


def copy_in(conn: psycopg.Connection, model: Any, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
    """COPY ``rows`` (values for ``columns``) into ``model``'s table; every other column gets the model field's
    default, as the ORM would write it (Django sets no defaults in the database)."""
    from django.db import connection

    others = [f for f in model._meta.concrete_fields if not f.primary_key and f.column not in columns]
    defaults = tuple(f.get_db_prep_save(f.get_default(), connection) for f in others)
    names = [*columns, *(f.column for f in others)]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(model._meta.db_table), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row((*row, *defaults))


def seed(conninfo: str, items: Items, decided: list[Decided], world: World, start: datetime) -> list[int]:
    """COPY the items, one local score row each and the decisions in; VACUUM ANALYZE as autovacuum would."""
    from queues.models import Decision, ReviewItem
    from routing.models import ClassifierScore

    default_queue = world.queues["general"].pk
    decided_at = {d.index: d for d in decided}
    dumps = json.dumps

    def item_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(len(items)):
            at = start + timedelta(seconds=float(items.offset_seconds[i]))
            done = i in decided_at
            media = [f"https://cdn.example.com/m/{i}/{k}.jpg" for k in range(int(items.media[i]))]
            yield (
                items.source[i],
                f"bench-{i:08d}",
                items.kind[i],
                items.text[i],
                dumps(media),
                items.author[i],
                items.surface[i],
                items.language[i],
                dumps(items.metadata[i], ensure_ascii=False),
                dumps(items.reasons[i]),
                int(items.report_count[i]),
                "decided" if done else "queued",
                default_queue,
                0,
                "[]",
                1,
                at,
                at + timedelta(seconds=2),
                at + timedelta(seconds=2),
                at + timedelta(hours=3) if done else None,
            )

    with psycopg.connect(conninfo) as conn:
        copy_in(conn, ReviewItem, ITEM_COLUMNS, item_rows())
        conn.commit()
        low, high, n = conn.execute("SELECT min(id), max(id), count(*) FROM queues_reviewitem").fetchone()
        if n != len(items) or high - low + 1 != n:
            raise SystemExit(f"COPY stored {n} items (expected {len(items)}), or not in one id run")
        ids = list(range(low, high + 1))

        def score_rows() -> Iterator[tuple[Any, ...]]:
            for i, item_id in enumerate(ids):
                at = start + timedelta(seconds=float(items.offset_seconds[i]) + 1)
                yield (item_id, "local", "local", "7", "", dumps(items.scores[i]), "{}", at)

        copy_in(conn, ClassifierScore, SCORE_COLUMNS, score_rows())

        def decision_rows() -> Iterator[tuple[Any, ...]]:
            for d in decided:
                at = start + timedelta(seconds=float(items.offset_seconds[d.index]))
                yield (
                    ids[d.index],
                    world.reviewer.pk,
                    default_queue,
                    world.policies[d.policy].pk,
                    world.actions[d.action].pk,
                    d.is_violation,
                    "",
                    at + timedelta(hours=2, minutes=59),
                    at + timedelta(hours=3),
                    timedelta(seconds=60),
                    True,
                )

        copy_in(conn, Decision, DECISION_COLUMNS, decision_rows())
        conn.commit()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in ("queues_reviewitem", "routing_classifierscore", "queues_decision"):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
    return ids


def raw_copy_seconds(conninfo: str, *, start: datetime, end: datetime, names: set[str]) -> tuple[float, int, int]:
    """Seconds, rows and bytes of ``COPY (SELECT …) TO STDOUT`` of what the backtest loads, in one query."""
    from routing.rules.features import raw_score_keys

    raw = raw_score_keys()
    item_fields = ["id", "received_at", "report_count", "kind", "source", "surface", "language"]
    item_fields += ["author_ref"] if names & {"author.prior_violations", "author.prior_reviews"} else []
    item_fields += ["text"] if "text" in names else []
    item_fields += ["metadata"] if any(n.startswith("metadata.") for n in names) else []
    select = [sql.SQL("i.{}").format(sql.Identifier(f)) for f in item_fields]
    select += [
        sql.SQL("(s.scores ->> {})::double precision").format(sql.Literal(raw[n])) for n in sorted(names) if n in raw
    ]
    query = sql.SQL(
        "COPY (SELECT {} FROM queues_reviewitem i LEFT JOIN routing_classifierscore s "
        "ON s.item_id = i.id AND s.backend = 'local' "
        "WHERE i.received_at >= {} AND i.received_at < {} AND i.state <> 'received' AND i.kind <> 'appeal' "
        "ORDER BY i.id) TO STDOUT"
    ).format(sql.SQL(", ").join(select), sql.Literal(start), sql.Literal(end))
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        t0 = time.perf_counter()
        size = lines = 0
        with cur.copy(query) as copy:
            for block in copy:
                size += len(block)
                lines += bytes(block).count(b"\n")
        return time.perf_counter() - t0, lines, size


@dataclass
class BacktestRun:
    total: float
    load: float
    evaluate: float
    result: dict[str, Any]
    own_cpu: float  # this process (its threads included)
    others_cpu: float  # processes other than this one and PostgreSQL's
    machine_cpu: float  # every process, PostgreSQL's backends included
    machine_total: float  # what the machine's CPUs had in the same time


def backtest_run(world: World, *, start: datetime, end: datetime, profile: cProfile.Profile | None) -> BacktestRun:
    from routing.rules.backtest import backtest_compute
    from routing.rules.engine import program_for

    draft, baseline = program_for(world.draft), program_for(world.baseline)
    busy0, all0 = machine_busy()
    others0 = others_cpu()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if profile is not None:
        profile.enable()
    result = backtest_compute(draft, baseline, start=start, end=end)
    if profile is not None:
        profile.disable()
    total = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    others1 = others_cpu()
    busy1, all1 = machine_busy()
    others = sum(value - others0.get(pid, 0.0) for pid, value in others1.items())
    seconds = result["seconds"]
    return BacktestRun(total, seconds["load"], seconds["evaluate"], result, cpu, others, busy1 - busy0, all1 - all0)


def others_cpu() -> dict[int, float]:
    """CPU seconds so far of every process but this one and PostgreSQL's (whose backends come and go)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                continue
        except OSError:
            continue
        found[int(entry.name)] = process_cpu(int(entry.name))
    return found


def loaders_check(world: World, *, start: datetime, hours: float) -> tuple[int, list[str], bool]:
    """Items in a window, the columns that differ between the PostgreSQL loader and the ORM loader (the one
    SQLite uses), and whether the two backtests of the window are equal."""
    from unittest import mock

    import routing.rules.columns as columns_module
    from routing.rules.backtest import backtest_compute
    from routing.rules.engine import program_for
    from routing.rules.language import Categorical, Mixed

    draft, baseline = program_for(world.draft), program_for(world.baseline)
    end = start + timedelta(hours=hours)
    names = set(draft.names) | set(baseline.names) | {"media_count"}
    fast = columns_module.item_columns(start=start, end=end, names=names)
    fast_result = backtest_compute(draft, baseline, start=start, end=end)
    # The same calls with the loader chosen as on any other database.
    with mock.patch.object(columns_module, "connection", mock.Mock(vendor="sqlite")):
        orm = columns_module.item_columns(start=start, end=end, names=names)
        orm_result = backtest_compute(draft, baseline, start=start, end=end)

    def plain(column: Any) -> list[Any]:
        values = column.materialize() if isinstance(column, Categorical | Mixed) else column
        return [None if isinstance(v, float) and math.isnan(v) else v for v in values.tolist()]

    differing = [
        name
        for name in sorted(fast.columns.keys() | orm.columns.keys())
        if name not in fast.columns or name not in orm.columns or plain(fast.columns[name]) != plain(orm.columns[name])
    ]
    if not (np.array_equal(fast.ids, orm.ids) and np.array_equal(fast.received_day, orm.received_day)):
        differing.append("ids/received_day")
    same = {k: v for k, v in fast_result.items() if k != "seconds"} == {
        k: v for k, v in orm_result.items() if k != "seconds"
    }
    return len(fast), differing, same


# --- the run -----------------------------------------------------------------------------------------


def rows_check(items: Items, ids: list[int], rows: list[dict[str, Any]], sample: int) -> int:
    """Rows that differ from what ``features.item_rows`` builds for the same stored items (first ``sample``)."""
    from queues.models import ReviewItem
    from routing.rules.features import item_rows

    stored = item_rows(list(ReviewItem.objects.filter(pk__in=ids[:sample]).order_by("pk")))
    differing = 0
    for i, item_id in enumerate(ids[:sample]):
        mine, theirs = rows[i], stored[item_id]
        same = mine.keys() == theirs.keys() and all(
            mine[k] == theirs[k] or (isinstance(mine[k], float) and math.isnan(mine[k]) and math.isnan(theirs[k]))
            for k in mine
        )
        differing += not same
    return differing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="stored items to backtest over")
    parser.add_argument("--rows", type=int, default=200_000, help="generated rows for the rows/s figures")
    parser.add_argument("--interpreted-rows", type=int, help="rows for the tree walk (default: --rows)")
    parser.add_argument("--decisions", type=int, default=50_000, help="items with a final human decision")
    parser.add_argument("--repeat", type=int, default=3, help="backtest runs, and best of for compiled rows/s")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bench_rules")
    parser.add_argument("--rate-target", type=float, default=100_000, help="compiled evaluations/s to pass")
    parser.add_argument("--backtest-target", type=float, default=10.0, help="backtest seconds to pass")
    parser.add_argument("--profile", action="store_true", help=f"cProfile the first backtest into {PROFILE.name}")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)

    conninfo, dbname, admin = scratch_database(args.database_url)
    # DEBUG off (app_env's): no query log, a million rows must not be kept in connection.queries.
    env = app_env(args.database_url, CELERY_BROKER_URL="", SCORING_DEFAULT_CHAIN="local")

    count = max(args.items, args.rows)
    print(f"generating {count:,} items and {args.decisions:,} decisions …", flush=True)
    t0 = time.perf_counter()
    items = items_generate(count, seed=1)
    decided = decisions_generate(items, args.decisions, seed=1)
    history = author_history(items, decided)
    generate_s = time.perf_counter() - t0

    print(f"recreating database {dbname}, migrating …", flush=True)
    database_recreate(admin, dbname)
    try:
        manage(env, "migrate", "--noinput")
        django_setup(env)
        from django.db import connection

        from routing.rules.engine import program_for
        from routing.rules.features import raw_score_keys

        world = world_create()
        draft = program_for(world.draft)
        score_names = raw_score_keys()
        rows = [row_of(items, i, score_names, history) for i in range(args.rows)]

        print(f"(a) {args.rows:,} rows: compiled, interpreted, columns …", flush=True)
        rates = measure_rows(draft, rows, interpreted_rows=args.interpreted_rows or args.rows, repeat=args.repeat)

        print(f"(b) seeding {args.items:,} items, {args.items:,} score rows, {len(decided):,} decisions by COPY …")
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=DAYS)
        end = start + timedelta(days=DAYS)
        stored = items.head(args.items)
        stored_decided = [d for d in decided if d.index < args.items]
        t0 = time.perf_counter()
        ids = seed(conninfo, stored, stored_decided, world, start)
        seed_s = time.perf_counter() - t0
        differing = rows_check(stored, ids, rows, 2000) if args.items >= args.rows else -1
        # The backtests run in a process holding no more than a worker would: not millions of generated rows
        # for the garbage collector to walk.
        del items, stored, rows, history
        gc.collect()

        names = set(draft.names) | set(program_for(world.baseline).names)
        print("raw COPY (SELECT …) TO STDOUT of the same columns …", flush=True)
        copy_s, copy_rows, copy_bytes = raw_copy_seconds(conninfo, start=start, end=end, names=names)
        connection.close()

        print("PostgreSQL loader against the ORM loader on 6 hours of items …", flush=True)
        checked, differing_columns, same_result = loaders_check(world, start=start + timedelta(days=3), hours=6)
        connection.close()

        runs = []
        profile = cProfile.Profile() if args.profile else None
        for n in range(args.repeat):
            print(f"backtest {n + 1}/{args.repeat} …", flush=True)
            runs.append(backtest_run(world, start=start, end=end, profile=profile if n == 0 else None))
        if profile is not None:
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(45)
            out.write("\n\n")
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(30)
            PROFILE.write_text(out.getvalue())

        result = runs[0].result
        report = Report("Routing rules benchmark")
        report.add("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
        report.add("machine", machine_description(conninfo))
        terminal, tagging = len(draft.terminal), len(draft.tagging)
        report.add(
            "rule set",
            f"{len(draft.specs)} intake rules ({terminal} deciding, {tagging} tag rules), reading "
            f"{len(draft.names)} fields; baseline: the active version, {len(BASELINE_RULES)} rules",
        )
        default_share = rates.matched["default"] / rates.rows
        report.add(
            "(a) rows",
            f"{rates.rows:,} generated rows shaped like features.item_rows; {default_share:.1%} match no rule "
            f"(every deciding rule checked); one thread pinned to CPU {rates.cpu}",
        )
        verdict = "met" if rates.decide >= args.rate_target else "MISSED"
        report.add(
            "**compiled `RuleProgram.decide`**",
            f"**{rates.decide:,.0f} rows/s** ({1e6 / rates.decide:.1f} µs/row: tags, guard, first match, Outcome; "
            f"target {args.rate_target:,.0f}: {verdict})",
        )
        report.add(
            "compiled `first_match` alone",
            f"{rates.first_match:,.0f} rows/s ({1e6 / rates.first_match:.1f} µs/row, {terminal} deciding rules)",
        )
        report.add(
            "interpreted `decide_interpreted`",
            f"{rates.interpreted:,.0f} rows/s ({1e6 / rates.interpreted:.1f} µs/row, over {rates.interpreted_rows:,} "
            f"rows); compiled first_match is {rates.first_match / rates.interpreted:.0f}x faster",
        )
        report.add(
            "vectorized `evaluate_columns`",
            f"{rates.evaluate_columns:,.0f} rows/s (all {len(draft.specs)} conditions as masks); "
            f"`route_columns` (first-match masks, caps) {rates.route_columns:,.0f} rows/s; "
            f"building the columns from rows took {rates.columns_build:.2f} s",
        )
        report.add("rows, three ways", f"{rates.disagreements} disagreements (compiled, interpreted, columns)")
        report.add(
            "(b) stored",
            f"{args.items:,} queues_reviewitem rows over {DAYS} days, {args.items:,} routing_classifierscore rows "
            f"(backend local), {len(stored_decided):,} final decisions; rows vs features.item_rows: "
            f"{differing} of 2,000 differ",
        )
        report.add(
            "seeding (not in the figures)",
            f"{seed_s:.1f} s (COPY, then VACUUM ANALYZE); generating the items {generate_s:.1f} s",
        )
        for n, run in enumerate(runs, start=1):
            verdict = "met" if run.total < args.backtest_target else "MISSED"
            label = f"**backtest_compute, run {n}**" if n == 1 else f"backtest_compute, run {n}"
            value = (
                f"{run.total:.2f} s: load {run.load:.2f} s, evaluate {run.evaluate:.2f} s, "
                f"summaries {run.total - run.load - run.evaluate:.2f} s "
                f"({run.result['items']:,} items, {run.result['items'] / run.total:,.0f} items/s; "
                f"target < {args.backtest_target:g} s: {verdict})"
            )
            report.add(label, f"**{value}**" if n == 1 else value)
            postgres = max(0.0, run.machine_cpu - run.own_cpu - run.others_cpu)
            report.add(
                f"CPU during run {n}",
                f"this process {run.own_cpu:.1f} s (both its threads), PostgreSQL {postgres:.1f} s, "
                f"other processes {run.others_cpu:.1f} s; machine {run.machine_cpu / run.machine_total:.0%} busy",
            )
        report.add(
            "raw PostgreSQL reference",
            f"COPY (SELECT the same columns, scores joined) TO STDOUT: {copy_s:.2f} s for {copy_rows:,} rows, "
            f"{copy_bytes / 1e6:,.0f} MB",
        )
        report.add(
            "PostgreSQL loader vs ORM loader",
            f"{checked:,} items (6 hours): "
            + (f"columns differing: {', '.join(differing_columns)}" if differing_columns else "every column equal")
            + ("; backtest results equal" if same_result else "; backtest results DIFFER"),
        )
        report.add(
            "backtest outcome",
            f"{result['changed']:,} items change destination; draft: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(result["destinations"].items(), key=lambda kv: -kv[1])[:6]),
        )
        text = report.render()
        print("\n" + text)
        if not args.no_write:
            RESULTS.write_text(text)
            print(f"written to {RESULTS.relative_to(ROOT)}")
        if args.profile:
            print(f"profile in {PROFILE.relative_to(ROOT)}")
        stable = all(
            {k: v for k, v in run.result.items() if k != "seconds"}
            == {k: v for k, v in result.items() if k != "seconds"}
            for run in runs
        )
        ok = (
            rates.disagreements == 0
            and differing <= 0
            and result["items"] == args.items
            and not differing_columns
            and same_result
            and stable
        )
        if not ok:
            print(
                f"FAILED: {rates.disagreements} disagreements, {differing} rows differ, {result['items']:,} items, "
                f"loader columns differing {differing_columns}, loader results equal {same_result}, "
                f"runs equal {stable}"
            )
        return 0 if ok else 1
    finally:
        scratch_release(admin, dbname, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
