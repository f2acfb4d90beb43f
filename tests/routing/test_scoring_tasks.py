"""Scoring as Celery tasks: batches, one effect when run twice, dead letters after the last retry, re-drive,
and the ops pages that show usage, incidents, dead letters and model cards."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client, TestCase

from ops_platform.core.models import AuditLog, User
from routing import tasks
from routing.intake.services import dead_letter_redrive
from routing.models import ClassifierScore, DeadLetter, IncidentKind, ModelVersion, ScoringIncident
from tests.conftest import PASSWORD

from .conftest import items_make

pytestmark = pytest.mark.django_db


def test_scoring_tasks_ack_late_and_run_on_the_triage_queue(settings: Any) -> None:
    for task in (tasks.items_score_task, tasks.items_triage_task):
        assert task.acks_late is True
        assert settings.CELERY_TASK_ROUTES["routing.tasks.*"] == {"queue": "triage"}


def test_running_the_scoring_task_twice_has_one_effect(local_model: ModelVersion) -> None:
    items = items_make("I will hurt you", "hello there", "buy cheap pills now")
    ids = [i.pk for i in items]
    assert tasks.items_score_task.apply(args=[ids]).get() == 3
    assert tasks.items_score_task.apply(args=[ids]).get() == 0  # acks_late redelivery: nothing new
    assert ClassifierScore.objects.filter(item_id__in=ids).count() == 3


def test_after_the_last_retry_a_dead_letter_is_recorded_and_can_be_redriven(
    monkeypatch: pytest.MonkeyPatch, settings: Any, local_model: ModelVersion, ops_manager: User
) -> None:
    items = items_make("first", "second")
    ids = [i.pk for i in items]
    calls = []

    def broken(**kwargs: Any) -> None:
        calls.append(kwargs)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(tasks, "items_score", broken)
    monkeypatch.setattr(tasks.items_score_task, "max_retries", 2)
    settings.CELERY_TASK_EAGER_PROPAGATES = False
    tasks.items_score_task.app.conf.task_eager_propagates = False
    try:
        result = tasks.items_score_task.apply(args=[ids])
    finally:
        tasks.items_score_task.app.conf.task_eager_propagates = True
    assert result.failed()
    assert len(calls) == 3

    letter = DeadLetter.objects.get()
    assert (letter.task, letter.args, letter.error_type, letter.retries) == (
        "routing.tasks.items_score_task",
        [ids],
        "OperationalError",
        2,
    )
    assert ScoringIncident.objects.get(kind=IncidentKind.DEAD_LETTER).occurrences == 1

    monkeypatch.undo()
    with pytest.MonkeyPatch.context() as m:
        sent: list[Any] = []
        m.setattr(tasks.items_score_task, "apply_async", lambda args: sent.append(args))
        with TestCase.captureOnCommitCallbacks(execute=True):
            dead_letter_redrive(letter=letter, actor=ops_manager)
    assert sent == [[ids]]
    letter.refresh_from_db()
    assert letter.redriven_by == "olga"
    assert letter.redriven_at is not None
    assert AuditLog.objects.filter(action="dead_letter.redrive", target_id=str(letter.pk)).exists()


def signed_in(user: User) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


def test_ops_page_shows_usage_incidents_and_dead_letters(ops_manager: User, local_model: ModelVersion) -> None:
    [item] = items_make("some text")
    tasks.items_score_task.apply(args=[[item.pk]])
    DeadLetter.objects.create(task="routing.tasks.items_score_task", args=[[1, 2]], error_type="OperationalError")
    page = signed_in(ops_manager).get("/scoring/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Classifier scoring" in html
    assert "OperationalError" in html
    assert "local-v1" in html
    assert page.context["usage"][0].backend == "local"
    assert page.context["usage"][0].items == 1


def test_reviewers_cannot_see_the_ops_pages(reviewer: User, local_model: ModelVersion) -> None:
    client = signed_in(reviewer)
    assert client.get("/scoring/").status_code == 403
    assert client.get(f"/scoring/models/{local_model.pk}/").status_code == 403
    letter = DeadLetter.objects.create(task="routing.tasks.items_score_task", args=[[1]], error_type="X")
    assert client.post(f"/scoring/dead-letters/{letter.pk}/redrive").status_code == 403
    assert Client().get("/scoring/").status_code == 302  # anonymous: to the sign-in page


def test_policy_staff_read_the_model_card(policy_staff: User, local_model: ModelVersion) -> None:
    page = signed_in(policy_staff).get(f"/scoring/models/{local_model.pk}/")
    assert page.status_code == 200
    assert "Model card: local-v1" in page.content.decode()
    assert "test model" in page.content.decode()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_scores_with_the_local_model_and_a_redelivered_batch_changes_nothing(
    api: Any, local_model: ModelVersion, shared_redis_url: str, celery_worker_factory: Any
) -> None:
    from queues.models import ItemState, ReviewItem
    from routing.models import CallOutcome, ClassifierCall
    from tests.conftest import celery_publishing_to, item, wait_until

    with celery_publishing_to(shared_redis_url):
        celery_worker_factory(shared_redis_url).start()
        ids = [r["id"] for r in api.post("/api/v1/items", [item(i) for i in range(30)]).json()["results"]]
        wait_until(
            lambda: ReviewItem.objects.filter(pk__in=ids, state=ItemState.QUEUED).count() == 30,
            timeout=60,
            what="the worker to score and route the batch",
        )
        assert ClassifierScore.objects.filter(item_id__in=ids, backend="local", model_version="local-v1").count() == 30
        calls = ClassifierCall.objects.filter(backend="local", outcome=CallOutcome.OK).count()

        tasks.items_score_task.delay(ids)  # as if the broker redelivered the batch
        tasks.items_score_task.delay(ids[:1])
        wait_until(lambda: _queue_empty(shared_redis_url), timeout=30, what="the worker to take both tasks")
    assert ClassifierScore.objects.filter(item_id__in=ids).count() == 30
    assert ClassifierCall.objects.filter(backend="local", outcome=CallOutcome.OK).count() == calls


def _queue_empty(url: str) -> bool:
    """Nothing waiting and nothing taken but unacknowledged (acks_late acks only after the task ran)."""
    import redis

    client = redis.Redis.from_url(url)
    return client.llen("triage") == 0 and client.hlen("unacked") == 0
