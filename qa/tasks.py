"""QA's periodic work: draw samples from new decisions, inject golden copies, score decided golden copies."""

from __future__ import annotations

from celery import shared_task

from qa.services import decisions_sample, golden_inject, golden_results_score


@shared_task
def decisions_sample_task() -> int:
    """Idempotent: a cursor and a fixed draw per decision mean a re-run draws nothing twice."""
    return decisions_sample()


@shared_task
def golden_inject_task() -> int:
    return golden_inject()


@shared_task
def golden_results_score_task() -> int:
    return golden_results_score()
