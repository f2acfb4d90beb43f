"""The embedded mode's celery beat: the same schedule (``CELERY_BEAT_SCHEDULE``) run by a thread of the web process.

Without a broker nothing else would run the periodic jobs (rollups, QA sampling, golden injection, alerts, the
sweepers), and every dashboard would stay at seed time. The thread starts with the first request a process serves
(so ``manage.py`` commands and runserver's autoreloader parent never run it) and wakes every
``PERIODIC_TICK_SECONDS``. Each start of a job is claimed by a conditional UPDATE of its ``PeriodicJobRun`` row:
several processes (gunicorn workers, a restarted runserver) share the schedule and never run a job twice for one
slot. Jobs run eagerly, one after another, in the thread; a failing job is logged and retried at its next slot.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import crontab, maybe_schedule
from celery.schedules import schedule as celery_schedule
from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone

from ops_platform.celery import app
from ops_platform.core.models import PeriodicJobRun

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    name: str
    ok: bool


def _is_due(schedule: Any, last: datetime | None, now: datetime) -> bool:
    if last is None:
        return True
    sched = maybe_schedule(schedule)
    if isinstance(sched, celery_schedule) and not isinstance(sched, crontab):
        return now - last >= timedelta(seconds=sched.seconds)
    # crontab (and any other kind) decides against the clock itself; ``now`` only matters to interval jobs.
    due, _ = sched.is_due(last)  # type: ignore[union-attr]
    return bool(due)


def periodic_job_claim(*, name: str, schedule: Any, now: datetime) -> bool:
    """True when this caller won the job's slot: it was due and no one else started it since we looked."""
    PeriodicJobRun.objects.bulk_create([PeriodicJobRun(name=name)], ignore_conflicts=True)
    last = PeriodicJobRun.objects.values_list("started_at", flat=True).get(name=name)
    if not _is_due(schedule, last, now):
        return False
    unchanged = Q(started_at__isnull=True) if last is None else Q(started_at=last)
    return PeriodicJobRun.objects.filter(unchanged, name=name).update(started_at=now) == 1


def _task(name: str) -> Any:
    # Import the task's module by its name (as a worker's autodiscovery would have), not through the loader's
    # default modules: those run Celery's Django fixup, the system checks included, on every call.
    if name not in app.tasks:
        importlib.import_module(name.rpartition(".")[0])
    return app.tasks[name]


def periodic_jobs_run_due(*, now: datetime | None = None) -> list[JobOutcome]:
    """Run, in-process, every job of the beat schedule whose slot is due and not taken; returns what ran."""
    outcomes = []
    schedule: dict[str, dict[str, Any]] = settings.CELERY_BEAT_SCHEDULE
    for name, entry in schedule.items():
        started = now or timezone.now()
        if not periodic_job_claim(name=name, schedule=entry["schedule"], now=started):
            continue
        ok = True
        try:
            _task(entry["task"]).apply(args=entry.get("args", ()), kwargs=entry.get("kwargs", {}), throw=True)
        except Exception:
            ok = False
            logger.exception("periodic job %s failed; it runs again at its next slot", name)
        PeriodicJobRun.objects.filter(name=name).update(finished_at=timezone.now(), failed=not ok)
        outcomes.append(JobOutcome(name, ok))
    return outcomes


_lock = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()


def _loop() -> None:
    while not _stop.is_set() and settings.PERIODIC_IN_PROCESS:
        try:
            periodic_jobs_run_due()
        except Exception:  # the database away for a moment: the next tick tries again
            logger.exception("periodic jobs tick failed")
        finally:
            connections.close_all()  # this thread's connections only
        _stop.wait(settings.PERIODIC_TICK_SECONDS)


def periodic_thread_start(**_: Any) -> bool:
    """Start the scheduler thread once per process (a ``request_started`` receiver); True when it started now."""
    global _thread
    if _thread is not None and _thread.is_alive():
        return False
    if not settings.PERIODIC_IN_PROCESS:
        return False
    with _lock:
        if _thread is not None and _thread.is_alive():
            return False
        _stop.clear()
        _thread = threading.Thread(target=_loop, name="periodic-jobs", daemon=True)
        _thread.start()
        return True


def periodic_thread_stop(timeout: float = 30.0) -> None:
    """Stop the thread after the job it is running (tests; a process that is shutting down)."""
    global _thread
    _stop.set()
    with _lock:
        if _thread is not None:
            _thread.join(timeout)
        _thread = None
