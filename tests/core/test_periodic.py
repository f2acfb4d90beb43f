"""The embedded mode's in-process beat: beat's own schedule, each slot run once whoever else is running it, a failing
job logged and retried at its next slot, the thread started by the first request only when the mode asks for it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from analytics.models import RollupCursor
from ops_platform.core import periodic
from ops_platform.core.models import PeriodicJobRun
from ops_platform.core.periodic import periodic_job_claim, periodic_jobs_run_due, periodic_thread_stop

REFRESH = {"refresh": {"task": "analytics.tasks.rollups_refresh_task", "schedule": timedelta(seconds=60)}}


def test_the_dashboard_jobs_run_at_least_once_a_minute() -> None:
    schedule = settings.CELERY_BEAT_SCHEDULE
    for name in ("analytics-refresh-rollups", "analytics-evaluate-alerts", "qa-sample-decisions"):
        assert schedule[name]["schedule"] <= timedelta(minutes=1), name


@pytest.mark.django_db
def test_a_due_job_runs_once_per_slot(settings: Any) -> None:
    settings.CELERY_BEAT_SCHEDULE = REFRESH
    t0 = timezone.now()

    assert [o.name for o in periodic_jobs_run_due(now=t0)] == ["refresh"]
    assert RollupCursor.objects.get().refreshed_at is not None
    assert periodic_jobs_run_due(now=t0 + timedelta(seconds=30)) == []
    assert [o.ok for o in periodic_jobs_run_due(now=t0 + timedelta(seconds=61))] == [True]
    run = PeriodicJobRun.objects.get(name="refresh")
    assert run.started_at == t0 + timedelta(seconds=61)
    assert run.finished_at is not None
    assert not run.failed


@pytest.mark.django_db
def test_a_failing_job_is_recorded_and_the_next_job_still_runs(
    settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**_: Any) -> None:
        raise RuntimeError("rollups broke")

    monkeypatch.setattr("analytics.rollups.rollups_refresh", broken)
    # The project's loggers do not propagate to the root logger caplog listens on.
    monkeypatch.setattr(periodic.logger, "handlers", [*periodic.logger.handlers, caplog.handler])
    settings.CELERY_BEAT_SCHEDULE = {
        **REFRESH,
        "sample": {"task": "qa.tasks.decisions_sample_task", "schedule": timedelta(seconds=60)},
    }

    outcomes = periodic_jobs_run_due()

    assert [(o.name, o.ok) for o in outcomes] == [("refresh", False), ("sample", True)]
    assert PeriodicJobRun.objects.get(name="refresh").failed
    assert "periodic job refresh failed" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_processes_racing_for_a_slot_run_it_once() -> None:
    now = timezone.now()
    schedule = timedelta(seconds=60)
    periodic_job_claim(name="race", schedule=schedule, now=now - timedelta(minutes=5))  # ran five minutes ago
    start = threading.Barrier(6)
    won: list[bool] = []

    def claim() -> None:
        try:
            start.wait()
            won.append(periodic_job_claim(name="race", schedule=schedule, now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False] * 5 + [True]


@pytest.mark.django_db(transaction=True)
def test_the_first_request_starts_the_thread_only_in_the_embedded_mode(settings: Any) -> None:
    settings.CELERY_BEAT_SCHEDULE = REFRESH
    settings.PERIODIC_TICK_SECONDS = 0.2
    try:
        settings.PERIODIC_IN_PROCESS = False
        Client().get("/healthz")
        assert periodic._thread is None

        settings.PERIODIC_IN_PROCESS = True
        Client().get("/healthz")
        first = periodic._thread
        assert first is not None
        Client().get("/healthz")
        assert periodic._thread is first, "one thread per process"
        deadline = time.monotonic() + 30
        while not PeriodicJobRun.objects.filter(name="refresh", finished_at__isnull=False).exists():
            assert time.monotonic() < deadline, "the thread ran the due job"
            time.sleep(0.1)
    finally:
        periodic_thread_stop()
    assert periodic._thread is None
