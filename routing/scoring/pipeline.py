"""Scoring a batch of items: per policy chain, try each backend in order and fall back on failure.

The chain ends in "unscored": such an item goes to human review marked unscored, so an outage of every
provider delays nothing and loses nothing. Scores are unique per (item, backend, model version, prompt
version), and items a backend has already scored are not sent again, so running a batch twice has one
effect.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from ops_platform.core.bulk import insert_ignoring_conflicts
from ops_platform.core.models import Policy
from queues.models import ReviewItem
from routing.scoring.base import BackendError, BatchScores, Classifier, TextToScore
from routing.scoring.guards import CircuitBreaker, budget_left
from routing.scoring.media.selectors import items_image_data_urls
from routing.scoring.media.services import items_media_process
from routing.scoring.models import Backend, CallOutcome, ClassifierCall, ClassifierScore
from routing.scoring.openai_backends import OpenAIModeration, OpenAIPolicyClassifier
from routing.scoring.redaction import redact
from routing.scoring.registry import LocalModel

logger = logging.getLogger(__name__)

BACKENDS: dict[str, Classifier] = {
    backend.name: backend for backend in (OpenAIModeration(), OpenAIPolicyClassifier(), LocalModel())
}


def backend_get(name: str) -> Classifier:
    return BACKENDS[name]


@dataclass
class ScoringReport:
    """What happened to a batch: items scored per backend, items left unscored, calls by outcome."""

    scored: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unscored: int = 0
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def policy_chains() -> dict[tuple[str, ...], list[Policy]]:
    """Active policies grouped by the backend chain that scores them."""
    chains: dict[tuple[str, ...], list[Policy]] = defaultdict(list)
    for policy in Policy.objects.filter(is_active=True).order_by("slug"):
        chain = tuple(policy.classifier_chain or settings.SCORING_DEFAULT_CHAIN)
        chains[chain].append(policy)
    if not chains:
        chains[tuple(settings.SCORING_DEFAULT_CHAIN)] = []
    return chains


def items_score(*, item_ids: Sequence[int] = (), items: Sequence[ReviewItem] | None = None) -> ScoringReport:
    """Score the items (``items`` already loaded with their text and language, or else ``item_ids``)."""
    report = ScoringReport()
    if items is None:
        items = list(
            ReviewItem.objects.filter(pk__any=item_ids).only("pk", "text", "language", "media_urls").order_by("pk")
        )
    else:
        items = list(items)
    if not items:
        return report
    # Before the classifiers: their image inputs and the rules' bank matches come from the stored copies.
    items_media_process(items)
    for chain, policies in policy_chains().items():
        remaining = items
        reasons: dict[str, str] = {}
        for name in chain:
            if not remaining:
                break
            remaining, reason = _try_backend(backend_get(name), remaining, policies, report)
            if reason:
                reasons[name] = reason
        if remaining:
            _mark_unscored(remaining, reasons, report)
    return report


def _already_scored(backend: Classifier, items: Sequence[ReviewItem], policies: Sequence[Policy]) -> set[int]:
    """Items this backend has scored at its current version, which a re-run must not pay for again.

    Looked up by item only (an item has a handful of score rows) and the version matched here, not in SQL (why:
    docs/performance.md, "routing/scoring/pipeline.py").
    """
    version, prompt = backend.scored_as(policies)
    rows = ClassifierScore.objects.filter(item__any=[i.pk for i in items]).values_list(
        "item_id", "backend", "model_version", "prompt_version"
    )
    return {
        item_id
        for item_id, name, model_version, prompt_seen in rows
        if name == backend.name
        and (version is None or model_version == version)
        and (prompt is None or prompt_seen == prompt)
    }


def _try_backend(
    backend: Classifier, items: list[ReviewItem], policies: Sequence[Policy], report: ScoringReport
) -> tuple[list[ReviewItem], str]:
    """Score what this backend can; return the items left for the next one and why they were left."""
    breaker = CircuitBreaker(backend.name)
    if not breaker.allow():
        _record_skip(backend.name, CallOutcome.CIRCUIT_OPEN, len(items), report)
        return items, CallOutcome.CIRCUIT_OPEN.label
    if not budget_left(backend.name):
        _record_skip(backend.name, CallOutcome.BUDGET_SPENT, len(items), report)
        return items, CallOutcome.BUDGET_SPENT.label
    try:
        done = _already_scored(backend, items, policies)
    except BackendError as error:
        _record_skip(backend.name, error.outcome, len(items), report)
        return items, error.outcome.label
    todo = [item for item in items if item.pk not in done]
    left: list[ReviewItem] = []
    reason = ""
    max_batch: int = getattr(backend, "max_batch", 500)
    for start in range(0, len(todo), max_batch):
        chunk = todo[start : start + max_batch]
        if start and breaker.state() == "open":  # an earlier chunk of this batch opened it
            _record_skip(backend.name, CallOutcome.CIRCUIT_OPEN, len(chunk), report)
            left.extend(chunk)
            reason = CallOutcome.CIRCUIT_OPEN.label
            continue
        scored = _call(backend, chunk, policies, breaker, report)
        if isinstance(scored, BackendError):
            left.extend(chunk)
            reason = scored.outcome.label
            continue
        scored_ids = {s.item_id for s in scored.items}
        missed = [item for item in chunk if item.pk not in scored_ids]
        if missed:
            left.extend(missed)
            reason = "some items refused or malformed"
    return left, reason


def _call(
    backend: Classifier,
    chunk: list[ReviewItem],
    policies: Sequence[Policy],
    breaker: CircuitBreaker,
    report: ScoringReport,
) -> BatchScores | BackendError:
    redactions: dict[str, int] = defaultdict(int)
    images = items_image_data_urls([item.pk for item in chunk]) if getattr(backend, "sees_images", False) else {}
    texts = []
    for item in chunk:
        text = item.text
        if backend.external:
            redacted = redact(text)
            text = redacted.text
            for kind, count in redacted.counts.items():
                redactions[kind] += count
        texts.append(TextToScore(item.pk, text, item.language, tuple(images.get(item.pk, ()))))
    started = time.perf_counter()
    try:
        result = backend.score(texts, policies=policies)
    except BackendError as error:
        latency = _ms(started)
        if error.counts_against_breaker:
            breaker.failure()
        ClassifierCall.objects.create(
            backend=backend.name,
            model=error.model,
            prompt_version=error.prompt_version,
            outcome=error.outcome,
            items=len(chunk),
            latency_ms=latency,
            input_tokens=error.input_tokens,
            output_tokens=error.output_tokens,
            cost_usd=error.cost_usd,
            redactions=dict(redactions),
        )
        report.calls[error.outcome] += 1
        # Status and outcome only: exception messages from providers may echo the request.
        logger.warning("scoring: %s failed for %d items (%s)", backend.name, len(chunk), error.outcome)
        return error
    breaker.success()
    call = ClassifierCall.objects.create(
        backend=backend.name,
        model=result.model,
        model_version=result.model_version,
        prompt_version=result.prompt_version,
        outcome=CallOutcome.OK,
        items=len(result.items),
        latency_ms=_ms(started),
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cost_usd=result.cost_usd,
        redactions=dict(redactions),
    )
    now = timezone.now()
    insert_ignoring_conflicts(
        ClassifierScore,
        [
            {
                "item_id": s.item_id,
                "backend": backend.name,
                "model": result.model,
                "model_version": result.model_version,
                "prompt_version": result.prompt_version,
                "scores": s.scores,
                "detail": s.detail,
                "call_id": call.pk,
                "created_at": now,
            }
            for s in result.items
        ],
    )
    report.calls[CallOutcome.OK] += 1
    report.scored[backend.name] += len(result.items)
    return result


def _record_skip(backend: str, outcome: CallOutcome, n: int, report: ScoringReport) -> None:
    ClassifierCall.objects.create(backend=backend, outcome=outcome, items=n)
    report.calls[outcome] += 1


def _mark_unscored(items: Sequence[ReviewItem], reasons: dict[str, str], report: ScoringReport) -> None:
    ClassifierScore.objects.bulk_create(
        [
            ClassifierScore(item=item, backend=Backend.UNSCORED, scores={}, detail={"reasons": reasons})
            for item in items
        ],
        ignore_conflicts=True,
    )
    report.unscored += len(items)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
