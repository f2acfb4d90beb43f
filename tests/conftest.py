"""Shared personas, API helpers and the real services (PostgreSQL, Redis, a celery worker) for tests.

Tests marked ``postgres`` or ``redis`` skip on a laptop without those services, and fail under
``CI=true``: CI must never pass by skipping the integration tests.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache import cache
from django.db import connection
from django.test import Client

from ops_platform.celery import app as celery_app
from ops_platform.core.models import ApiClient, ApiScope, Role, Team, User, Vendor
from ops_platform.core.services import api_client_create, user_create
from queues.models import Queue
from routing.models import ModelVersion
from routing.scoring.local_model import LocalClassifier, fit
from routing.scoring.registry import model_promote, model_register
from routing.scoring.training import DATASET_KEYS
from tests.support.datasets import LABELLED_SET, labelled_rows, seed_slice_rows

# The private Redis server and the waiting helpers are shared with the fault drills and the benchmarks.
from tests.support.servers import RedisServer as RedisServer
from tests.support.servers import free_port as free_port
from tests.support.servers import wait_until as wait_until

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI") == "true"


def require(available: bool, what: str) -> None:
    if available:
        return
    if CI:
        pytest.fail(f"CI=true and {what} is not available: integration tests must run, not skip.")
    pytest.skip(f"{what} is not available")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres"):
        require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL or 127.0.0.1:5432)")
    if item.get_closest_marker("redis"):
        require(shutil.which("redis-server") is not None, "the redis-server binary")


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Every test starts with an empty cache: throttle counters (invalid API keys per address, requests per
    client) and circuit breakers belong to one test, not to whatever ran before it in the process."""
    cache.clear()


@pytest.fixture
def latest_schema_after() -> Iterator[None]:
    """For a test that migrates the database back: migrate forward to the latest schema afterwards, pass or
    fail. The tests that follow (and the transactional ones keep the database between tests) expect every
    column the models have."""
    from django.db.migrations.executor import MigrationExecutor

    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


# --- personas ---------------------------------------------------------------------------------------

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def in_house_team(db: None) -> Team:
    return Team.objects.create(slug="in-house", name="In-house")


@pytest.fixture
def vendor_a(db: None) -> Vendor:
    return Vendor.objects.create(slug="vendor-a", name="Vendor A", cost_per_decision="0.35")


@pytest.fixture
def vendor_b(db: None) -> Vendor:
    return Vendor.objects.create(slug="vendor-b", name="Vendor B", cost_per_decision="0.30")


def _person(username: str, roles: list[Role], team: Team | None = None) -> User:
    return user_create(actor="test", username=username, password=PASSWORD, roles=roles, team=team)


@pytest.fixture
def reviewer(in_house_team: Team) -> User:
    return _person("alice", [Role.REVIEWER], in_house_team)


@pytest.fixture
def vendor_reviewer(vendor_a: Vendor) -> User:
    return _person("vic", [Role.REVIEWER], Team.objects.create(slug="vendor-a-team", name="A team", vendor=vendor_a))


@pytest.fixture
def qa_lead(in_house_team: Team) -> User:
    return _person("quinn", [Role.SENIOR_REVIEWER], in_house_team)


@pytest.fixture
def policy_staff(db: None) -> User:
    return _person("pat", [Role.POLICY_STAFF])


@pytest.fixture
def ops_manager(db: None) -> User:
    return _person("olga", [Role.OPS_MANAGER])


@pytest.fixture
def admin_user(db: None) -> User:
    return _person("ada", [Role.ADMIN])


@pytest.fixture
def outsider(db: None) -> User:
    return _person("oscar", [])


# --- intake -----------------------------------------------------------------------------------------


@pytest.fixture
def intake_queue(db: None) -> Queue:
    return Queue.objects.create(slug="general", name="General", is_default_intake=True)


@dataclass
class Api:
    """A signed-in integrating service talking JSON to the API through Django's test client."""

    client: ApiClient
    key: str
    http: Client
    # Runs on_commit hooks (the triage hand-off) as a real commit would; tests run inside a transaction.
    commit_hooks: Any = None

    def headers(self, **extra: str) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.key}", **extra}

    def post(self, path: str, body: Any, **extra: str) -> Any:
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        if self.commit_hooks is None:
            return self.http.post(path, data, content_type="application/json", **self.headers(**extra))
        with self.commit_hooks(execute=True):
            return self.http.post(path, data, content_type="application/json", **self.headers(**extra))

    def get(self, path: str, **extra: str) -> Any:
        return self.http.get(path, **self.headers(**extra))


@pytest.fixture
def api(intake_queue: Queue, django_capture_on_commit_callbacks: Any) -> Api:
    client, key = api_client_create(
        actor="test", name="Integrator", source="integrator", scopes=[s.value for s in ApiScope]
    )
    return Api(client, key, Client(), django_capture_on_commit_callbacks)


def item(n: int | str, **fields: Any) -> dict[str, Any]:
    return {"external_id": f"ext-{n}", "text": f"item number {n}", **fields}


# --- the shared labeled set and a trained local model ------------------------------------------------


def dataset_rows(limit: int | None = None) -> list[dict[str, Any]]:
    if not LABELLED_SET.exists():
        pytest.fail(f"the labelled set is missing: {LABELLED_SET}")
    rows = labelled_rows()
    return rows[:limit] if limit else rows


@pytest.fixture(scope="session")
def seed_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small slice of the shipped seed set with every category learnable, as a labelled file."""
    path = tmp_path_factory.mktemp("seed") / "seed-slice.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in seed_slice_rows())
    return path


@pytest.fixture(autouse=True)
def _small_seed_set(settings: Any, seed_slice: Path) -> None:
    """Every local-model training in the suite learns from the small slice instead of all 1,680 samples,
    so demo builds and training tests stay fast; a test that needs the whole set sets it back."""
    settings.SCORING_SEED_SET = str(seed_slice)


def dataset_labels(row: dict[str, Any]) -> dict[str, int]:
    return {str(DATASET_KEYS[k]): int(v) for k, v in row.items() if k in DATASET_KEYS}


@pytest.fixture(scope="session")
def trained_classifier() -> LocalClassifier:
    """One fit per test session (a few seconds) on a slice of the shared moderation set."""
    rows = dataset_rows(700)
    return fit([r["prompt"] for r in rows], [dataset_labels(r) for r in rows], seed=0)


@pytest.fixture
def local_model(db: None, trained_classifier: LocalClassifier) -> ModelVersion:
    version = model_register(
        model=trained_classifier,
        training_data={"examples": 700, "sources": {"openai-moderation-1680": 700}},
        metrics={},
        thresholds={},
        known_limits="test model",
        trained_by="test",
    )
    return model_promote(candidate=version, actor="test")


# --- real services ----------------------------------------------------------------------------------


@pytest.fixture
def shared_redis_url() -> str:
    """The Redis service CI and developers run (``CELERY_BROKER_URL``), on a database of the suite's own."""
    base = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    url = base.rsplit("/", 1)[0] + "/13"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).flushdb()
    except redis.ConnectionError:
        require(False, f"the Redis service at {base}")
    return url


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@contextmanager
def celery_publishing_to(broker_url: str) -> Iterator[None]:
    """Make this process send tasks to a real broker instead of running them eagerly.

    Celery reads ``CELERY_BROKER_URL`` from the environment before ``conf.broker_url``, so that is
    switched too: CI exports it for the whole run.
    """
    conf = celery_app.conf
    saved = conf.task_always_eager, conf.broker_url
    saved_env = os.environ.get("CELERY_BROKER_URL")

    def reset_pools() -> None:
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    conf.task_always_eager, conf.broker_url = False, broker_url
    os.environ["CELERY_BROKER_URL"] = broker_url
    reset_pools()
    try:
        yield
    finally:
        conf.task_always_eager, conf.broker_url = saved
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env
        reset_pools()


class CeleryWorker:
    """A real ``celery worker`` subprocess on the test database and a given broker."""

    def __init__(self, broker_url: str, queues: str = "triage,default") -> None:
        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "ops_platform.settings",
            "SECRET_KEY": "test-worker",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "CELERY_BROKER_URL": broker_url,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "CONN_MAX_AGE": "0",
        }
        self.queues = queues
        self.proc: subprocess.Popen[str] | None = None
        self.log = ROOT / "test-artifacts" / f"celery-worker-{os.getpid()}-{time.monotonic_ns()}.log"

    def start(self) -> None:
        self.log.parent.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "ops_platform",
                "worker",
                "-Q",
                self.queues,
                "--pool",
                "solo",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "info",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_until(
            lambda: "ready" in self.log.read_text() or self.proc.poll() is not None,  # type: ignore[union-attr]
            timeout=60,
            what="celery worker to be ready",
        )
        assert self.proc.poll() is None, f"celery worker exited:\n{self.log.read_text()[-3000:]}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


@pytest.fixture
def celery_worker_factory() -> Iterator[Any]:
    workers: list[CeleryWorker] = []

    def make(broker_url: str, queues: str = "triage,default") -> CeleryWorker:
        worker = CeleryWorker(broker_url, queues)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop()
