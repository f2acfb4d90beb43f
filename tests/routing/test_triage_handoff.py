"""The hand-off from intake to triage: after commit, idempotent, and nothing lost when the broker is down."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from queues.models import ItemState, ReviewItem
from routing import tasks
from routing.intake.services import items_sweep_untriaged
from tests.conftest import Api, CeleryWorker, RedisServer, celery_publishing_to, free_port, item, wait_until


@pytest.mark.django_db
def test_running_the_triage_task_twice_has_one_effect(api: Api):
    api.client.source  # noqa: B018 - the fixture also creates the default intake queue
    received = ReviewItem.objects.create(source="s", external_id="x", text="t", received_at=timezone.now())

    assert tasks.items_triage_task(item_ids=[received.pk]) == 1
    first = ReviewItem.objects.get(pk=received.pk)
    assert tasks.items_triage_task(item_ids=[received.pk]) == 0
    second = ReviewItem.objects.get(pk=received.pk)

    assert first.state == second.state == ItemState.QUEUED
    assert first.triaged_at == second.triaged_at
    assert received.events.count() == 1


@pytest.mark.django_db
def test_the_sweeper_resends_only_items_left_received_and_marks_them(api: Api, django_capture_on_commit_callbacks):
    old = timezone.now() - timedelta(minutes=10)
    stuck = ReviewItem.objects.create(source="s", external_id="stuck", text="t", received_at=old)
    fresh = ReviewItem.objects.create(source="s", external_id="fresh", text="t", received_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        assert items_sweep_untriaged(older_than=timedelta(minutes=2)) == 1

    stuck.refresh_from_db()
    fresh.refresh_from_db()
    assert stuck.state == ItemState.QUEUED
    assert stuck.triage_requested_at is not None
    assert fresh.state == ItemState.RECEIVED


@pytest.mark.django_db
def test_the_sweeper_waits_before_resending_the_same_item(api: Api):
    old = timezone.now() - timedelta(minutes=10)
    ReviewItem.objects.create(source="s", external_id="stuck", text="t", received_at=old)

    # Not executing the hooks stands for a broker that swallowed the send: the item stays received.
    assert items_sweep_untriaged(older_than=timedelta(minutes=2)) == 1
    assert items_sweep_untriaged(older_than=timedelta(minutes=2)) == 0


@pytest.mark.django_db
def test_intake_accepts_items_while_the_broker_is_unreachable(api: Api):
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    with celery_publishing_to(dead_broker):
        response = api.post("/api/v1/items", [item(1), item(2)])

    assert response.status_code == 201
    assert set(ReviewItem.objects.values_list("state", flat=True)) == {ItemState.RECEIVED}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_an_item_submitted_while_redis_is_down_is_triaged_once_redis_returns(
    api: Api, redis_server: RedisServer, celery_worker_factory
):
    redis_server.stop()
    with celery_publishing_to(redis_server.url):
        response = api.post("/api/v1/items", item(1))
        assert response.status_code == 201
        item_id = response.json()["id"]
        assert ReviewItem.objects.get(pk=item_id).state == ItemState.RECEIVED

        redis_server.start()
        worker: CeleryWorker = celery_worker_factory(redis_server.url)
        worker.start()
        assert items_sweep_untriaged(older_than=timedelta(0)) == 1

        wait_until(
            lambda: ReviewItem.objects.get(pk=item_id).state == ItemState.QUEUED,
            timeout=60,
            what="the real worker to triage the swept item",
        )
    triaged = ReviewItem.objects.get(pk=item_id)
    assert triaged.queue is not None
    assert triaged.queue.slug == "general"
    assert triaged.events.filter(event="queued").count() == 1


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_started_late_triages_what_waited_in_redis(api: Api, shared_redis_url: str, celery_worker_factory):
    with celery_publishing_to(shared_redis_url):
        ids = [r["id"] for r in api.post("/api/v1/items", [item(i) for i in range(20)]).json()["results"]]
        assert set(ReviewItem.objects.filter(pk__in=ids).values_list("state", flat=True)) == {ItemState.RECEIVED}

        celery_worker_factory(shared_redis_url).start()

        wait_until(
            lambda: not ReviewItem.objects.filter(pk__in=ids, state=ItemState.RECEIVED).exists(),
            timeout=60,
            what="the late worker to drain the triage queue",
        )
    assert ReviewItem.objects.filter(pk__in=ids, state=ItemState.QUEUED).count() == 20
