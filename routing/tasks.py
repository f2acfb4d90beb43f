"""Triage Celery tasks: thin wrappers that take ids and call services.

Every task here runs with ``acks_late`` (a worker killed mid-task leaves the message for another) and,
after its last retry, leaves a dead letter that ops can see and re-drive.
"""

from typing import Any

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from routing.intake import services
from routing.intake.idempotency import idempotency_records_purge
from routing.rules.apply import items_escalate_overdue
from routing.rules.backtest import backtest_run, backtests_stalled_fail
from routing.scoring.coverage import coverage_incident_sync
from routing.scoring.pipeline import items_score


class DeadLetteringTask(Task):
    """Transient database trouble is retried with backoff; what is left after the last retry is dead-lettered."""

    acks_late = True
    autoretry_for = (OperationalError, InterfaceError)
    retry_backoff = True
    retry_backoff_max = 120
    retry_jitter = True
    max_retries = 8

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        services.dead_letter_record(task=self.name, args=list(args), exc=exc, retries=self.request.retries or 0)


@shared_task(base=DeadLetteringTask)
def items_triage_task(item_ids: list[int]) -> int:
    """Score and route a batch of items. Running it twice has one effect: only 'received' items move."""
    return len(services.items_triage(item_ids=item_ids))


@shared_task(base=DeadLetteringTask)
def items_score_task(item_ids: list[int]) -> int:
    """Score a batch without routing it (re-scoring, backfills, the scoring benchmark)."""
    report = items_score(item_ids=item_ids)
    return sum(report.scored.values())


@shared_task
def items_sweep_untriaged_task() -> int:
    return services.items_sweep_untriaged()


@shared_task
def idempotency_records_purge_task() -> int:
    return idempotency_records_purge()


@shared_task
def items_escalate_overdue_task() -> int:
    """The SLA sweep: escalation rules over queued items past due (each rule escalates an item once)."""
    return items_escalate_overdue()


@shared_task(acks_late=True)
def backtest_run_task(backtest_id: int) -> int:
    """A large backtest, off the request; progress is written to the Backtest row as it loads."""
    return backtest_run(backtest_id=backtest_id).items


@shared_task
def backtests_stalled_fail_task() -> int:
    """The stall sweep: a backtest whose process was killed ends 'failed', never 'running' for good."""
    return backtests_stalled_fail()


@shared_task
def scoring_coverage_check_task() -> bool:
    """Open or resolve the standing incident of a child-safety guard without a score; True while it is open."""
    return coverage_incident_sync() is not None
