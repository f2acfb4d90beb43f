"""What the benchmarks share: scratch databases, the app's environment and processes (gunicorn, a celery worker),
the local model's training, manage.py runs and CPU accounting from /proc.

The scripts run as ``python bench/<name>.py``, so this directory is on their import path; the drills import it as
``bench.benchlib``.
"""

from __future__ import annotations

import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TICK = os.sysconf("SC_CLK_TCK")
DATASET = ROOT.parent / "shared" / "datasets" / "openai-moderation-samples-1680.jsonl.gz"
DATASET_NAME = "openai-moderation-1680"
ITEMS_TABLE = "queues_reviewitem"
# The columns an intake insert fills with something other than NULL, in the order COPY sends them.
INTAKE_COLUMNS = [
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
    "priority",
    "received_at",
    "required_reviews",
    "tags",
    "is_golden",
]

# --- scratch databases ----------------------------------------------------------------------------


def scratch_database(url: str, *, prefix: str = "") -> tuple[str, str, str]:
    """The conninfo, database name and server admin conninfo of ``--database-url``, which must name a scratch
    database (starting with ``prefix``): it is dropped and recreated."""
    conninfo = make_conninfo(url)
    dbname = str(conninfo_to_dict(conninfo).get("dbname") or "")
    if dbname in ("", "postgres") or not dbname.startswith(prefix):
        named = f" {prefix}*" if prefix else ""
        raise SystemExit(f"--database-url must name a scratch database{named}: it is dropped and recreated")
    return conninfo, dbname, make_conninfo(conninfo, dbname="postgres")


def database_recreate(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_drop(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def scratch_release(admin: str, dbname: str, *, keep: bool, kept: str = "", files: Sequence[Path] = ()) -> None:
    """After a run: close this process's Django connections, then drop the scratch database and delete ``files``,
    or say that they are kept (``kept`` names the files)."""
    if "django" in sys.modules:
        from django.db import connections

        connections.close_all()
    if keep:
        print(f"kept database {dbname}{kept}")
        return
    database_drop(admin, dbname)
    for path in files:
        path.unlink(missing_ok=True)


def redis_flush(*urls: str) -> None:
    """Empty the bench's own Redis databases (broker and cache), before a run and after it."""
    for url in urls:
        redis.Redis.from_url(url).flushdb()


# --- the app --------------------------------------------------------------------------------------


def app_env(
    database_url: str, *, drop: Sequence[str] = ("OPENAI_API_KEY", "SCORING_DEFAULT_CHAIN"), **settings: str
) -> dict[str, str]:
    """The environment of the app's processes on a scratch database: this one's less ``drop``, production
    settings (no demo world, no DEBUG), then ``settings``."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DJANGO_SETTINGS_MODULE="ops_platform.settings",
        OPS_DEMO="0",
        DEBUG="0",
        DATABASE_URL=database_url,
        SECRET_KEY="bench-only-secret-key",  # noqa: S106 - a throwaway database
    )
    env.update(settings)
    return env


def django_setup(env: dict[str, str], *, refuse_eager: str = "") -> None:
    """Django in this process too, on the scratch database. ``refuse_eager``: why Celery's eager mode would
    spoil the run (the tasks this process sends must run in a worker), said when it is on."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    if refuse_eager:
        from ops_platform.celery import app

        if app.conf.task_always_eager:
            raise SystemExit(f"Celery is in eager mode: {refuse_eager}")


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args[:1])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def model_train(env: dict[str, str], dataset: Path = DATASET, *, actor: str, echo: bool = True) -> tuple[str, float]:
    """Import the labeled set, train a local model version and promote it, as an operator would; its label and
    the seconds training took. ``echo`` prints what the import says."""
    if not dataset.exists():
        raise SystemExit(f"the shared labeled set is missing: {dataset}")
    imported = manage(env, "labeled_import", str(dataset), "--dataset", DATASET_NAME)
    if echo:
        print(imported.strip(), flush=True)
    t0 = time.perf_counter()
    out = manage(env, "classifier_train", "--promote", "--actor", actor)
    seconds = time.perf_counter() - t0
    active = re.search(r"^(\S+) is now active", out, re.MULTILINE)
    if active is None:
        raise SystemExit(f"classifier_train did not promote a version:\n{out}")
    return active.group(1), seconds


# --- the app's processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a warm shutdown), then SIGKILL if it has not exited within 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def gunicorn_argv(port: int, workers: int) -> list[str]:
    """The WSGI app as deployed: gunicorn with sync workers (and no access log)."""
    return [PYTHON, "-m", "gunicorn", "ops_platform.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}"]


def healthz_answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def gunicorn(env: dict[str, str], *, workers: int, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """gunicorn answering /healthz, until the block ends: its base URL and master process."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            gunicorn_argv(port, workers), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not healthz_answers(base):
            if proc.poll() is not None:
                raise SystemExit(f"gunicorn exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not answer /healthz within 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base, proc
    finally:
        process_stop(proc)


def celery_worker_argv(
    *, name: str, queues: str = "triage", pool: str = "solo", concurrency: int | None = None,
    prefetch: int | None = None,
) -> list[str]:  # fmt: skip
    """``celery worker`` on ``queues``, named ``<name>-<this pid>``; the pool's size and prefetch as configured
    unless given."""
    argv = [PYTHON, "-m", "celery", "-A", "ops_platform", "worker", "-Q", queues, "--pool", pool]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    if prefetch is not None:
        argv += ["--prefetch-multiplier", str(prefetch)]
    argv += ["--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info"]
    return [*argv, "-n", f"{name}-{os.getpid()}@%h"]


@contextmanager
def celery_worker(
    env: dict[str, str], *, log: Path, name: str, pool: str = "solo", concurrency: int = 1,
    prefetch: int | None = None, timeout: float = 60,
) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """One ``celery worker`` on the triage queue, logging at INFO, ready until the block ends."""
    argv = celery_worker_argv(name=name, pool=pool, concurrency=concurrency, prefetch=prefetch)
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not re.search(r"\bready\.", log.read_text(errors="replace")):
            if proc.poll() is not None:
                raise SystemExit(f"celery worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"celery worker not ready within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        process_stop(proc)


@contextmanager
def py_spy(pid: int, output: Path, *options: str, rate: int = 250, required: bool = True) -> Iterator[None]:
    """Sample a process with py-spy (``options``: ``--subprocesses``, ``--idle``) while the block runs, into a
    raw (collapsed) file; ``required``: no file written is an error."""
    exe = shutil.which("py-spy", path=str(Path(PYTHON).parent)) or shutil.which("py-spy")
    if exe is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    cmd = [exe, "record", "--pid", str(pid), *options, "--nonblocking", "--rate", str(rate)]
    cmd += ["--format", "raw", "--output", str(output)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.5)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        if required and not output.exists():
            raise SystemExit(f"py-spy wrote no profile: {err.decode()[-2000:]}")


# --- the machine and CPU accounting ---------------------------------------------------------------


def cpu_model() -> str:
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )


def machine_description(conninfo: str) -> str:
    with psycopg.connect(conninfo) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    return (
        f"{len(os.sched_getaffinity(0))} CPUs ({cpu_model()}), PostgreSQL {version[0] if version else '?'}, "
        f"Python {platform.python_version()}"
    )


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state first), or none if the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    stat = proc_stat(pid)
    return (int(stat[11]) + int(stat[12])) / TICK if stat else 0.0


# The PostgreSQL processes working for a bench: the backends connected to its database, and the server's own
# writers (WAL, checkpoints, background), which work for them.
WORKING_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (datname = %s OR backend_type IN "
    "('walwriter', 'checkpointer', 'background writer'))"
)


def postgres_pids(conninfo: str, dbname: str) -> list[int]:
    """The PostgreSQL processes working for the bench on ``dbname`` now (WORKING_BACKENDS)."""
    with psycopg.connect(conninfo) as conn:
        return [pid for (pid,) in conn.execute(WORKING_BACKENDS, [dbname]).fetchall()]


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICK, sum(values[:8]) / TICK


# --- figures --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``q`` of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Report:
    """A benchmark's figures as a two-column markdown table under a heading."""

    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, label: str, value: str) -> None:
        self.rows.append((label, value))

    def render(self) -> str:
        width = max(len(label) for label, _ in self.rows)
        lines = [f"## {self.title}", "", f"| {'':<{width}} | |", f"|{'-' * (width + 2)}|---|"]
        lines += [f"| {label:<{width}} | {value} |" for label, value in self.rows]
        return "\n".join(lines) + "\n"
