"""The app as deployed, in subprocesses on a scratch database: its environment, manage.py, gunicorn, celery
worker and beat, each with its log, started in order and stopped however a block ends."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from tests.support.datasets import LABELLED_SET, LABELLED_SET_NAME
from tests.support.servers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# What the parent's environment must not pass on: a real provider, a chain or eager mode would change the run.
DROPPED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SCORING_DEFAULT_CHAIN", "CELERY_TASK_ALWAYS_EAGER", "CI")


@functools.cache
def scratch_static_root() -> Path:
    """Where this process's scratch apps collect their static files: a temporary directory of its own (removed at
    exit), never the checkout's staticfiles/, which a test or another run may be reading at the same time."""
    path = Path(tempfile.mkdtemp(prefix="ops-static-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def app_env(database_url: str, *, drop: Sequence[str] = DROPPED, **settings: str) -> dict[str, str]:
    """The environment of the app's processes on a scratch database: this one's less ``drop``, production
    settings (no demo world, no DEBUG), the app from this checkout, then ``settings``."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DJANGO_SETTINGS_MODULE="ops_platform.settings",
        OPS_DEMO="0",
        DEBUG="0",
        DATABASE_URL=database_url,
        SECRET_KEY="scratch-only-secret-key",
        STATIC_ROOT=str(scratch_static_root()),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    env.update(settings)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """``manage.py`` in a subprocess; its output, or SystemExit with it when it failed."""
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args[:1])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def model_train(env: dict[str, str], dataset: Path = LABELLED_SET, *, actor: str) -> tuple[str, float, str]:
    """Import the labelled set, train a local model version and promote it, as an operator would: its label,
    the seconds training took and what the import said."""
    if not dataset.exists():
        raise SystemExit(f"the labelled set is missing: {dataset}")
    imported = manage(env, "labeled_import", str(dataset), "--dataset", LABELLED_SET_NAME)
    t0 = time.perf_counter()
    # No cross-validated card figures: the callers time scoring, not measurement (classifier_evaluate does that).
    out = manage(env, "classifier_train", "--promote", "--folds", "0", "--actor", actor)
    seconds = time.perf_counter() - t0
    active = re.search(r"^(\S+) is now active", out, re.MULTILINE)
    if active is None:
        raise SystemExit(f"classifier_train did not promote a version:\n{out}")
    return active.group(1), seconds, imported.strip()


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def process_stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a warm shutdown), then SIGKILL if it has not exited within 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def healthz_answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


class Process:
    """One of the app's long-running processes, ready once its log shows ``ready``; a restart appends to the log."""

    ready: str = ""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, *, timeout: float = 90) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        mode = "ab" if self.starts else "wb"
        with self.log.open(mode) as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1
        offset = self.log.stat().st_size if mode == "ab" else 0
        deadline = time.monotonic() + timeout
        while not self.is_ready(offset):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[2:4]} exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.argv[2:4]} not ready within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.1)

    def is_ready(self, offset: int) -> bool:
        with self.log.open("rb") as f:
            f.seek(max(0, offset - 1))
            return re.search(self.ready.encode(), f.read()) is not None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no chance to ack or requeue what it holds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            process_stop(self.proc)
        self.proc = None


class Worker(Process):
    """A real ``celery worker`` on ``queues``, named ``<name>-<this pid>``; solo pool, one task at a time and the
    configured prefetch unless told otherwise."""

    ready = r"\bready\."

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        *,
        queues: str = "triage",
        name: str = "drill",
        pool: str = "solo",
        concurrency: int = 1,
        prefetch: int | None = None,
    ) -> None:
        argv = [PYTHON, "-m", "celery", "-A", "ops_platform", "worker", "-Q", queues, "--pool", pool]
        argv += ["--concurrency", str(concurrency)]
        argv += ["--prefetch-multiplier", str(prefetch)] if prefetch is not None else []
        argv += ["--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info"]
        super().__init__([*argv, "-n", f"{name}-{os.getpid()}@%h"], env, log)


class Beat(Process):
    """``celery beat`` with the database scheduler, as deployed: it sends the sweepers on their schedule."""

    ready = r"beat: Starting"

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.rundir = Path(tempfile.mkdtemp(prefix="drill-beat-"))
        argv = [PYTHON, "-m", "celery", "-A", "ops_platform", "beat", "-l", "info"]
        argv += ["--pidfile", str(self.rundir / "beat.pid"), "-s", str(self.rundir / "schedule")]
        super().__init__(argv, env, log)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.rundir, ignore_errors=True)


class Gunicorn(Process):
    """The WSGI app as deployed: gunicorn with sync workers (no access log), ready when /healthz answers."""

    ready = r"Booting worker"

    def __init__(self, env: dict[str, str], log: Path, *, workers: int = 2) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [PYTHON, "-m", "gunicorn", "ops_platform.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{self.port}"]
        super().__init__([*argv, "--timeout", "120", "--graceful-timeout", "5"], env, log)

    def start(self, *, timeout: float = 90) -> None:
        super().start(timeout=timeout)
        wait_until(lambda: healthz_answers(self.base), timeout=timeout, what="gunicorn to answer /healthz")

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        return sorted(children(self.proc.pid))


@contextlib.contextmanager
def running(*processes: Process) -> Iterator[None]:
    """Start processes in order and stop them all (in reverse) however the block ends."""
    started: list[Process] = []
    try:
        for process in processes:
            process.start()
            started.append(process)
        yield
    finally:
        for process in reversed(started):
            process.stop()
