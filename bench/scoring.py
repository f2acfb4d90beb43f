"""Local-model scoring throughput through a real Celery worker on Redis: batched tasks against one item per task.

Self-contained: creates its own database, migrates it, imports the shared labeled set, trains and promotes the
local model, creates the items, starts one Celery worker (solo pool), scores, checks, cleans up.

    .venv/bin/python bench/scoring.py [--items 20000] [--batch 500] [--single-items 2000] [--profile] [--keep]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import platform
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from benchlib import (
    DATASET,
    INTAKE_COLUMNS,
    ITEMS_TABLE,
    ROOT,
    TICK,
    app_env,
    celery_worker,
    children,
    database_recreate,
    django_setup,
    machine_busy,
    machine_description,
    manage,
    model_train,
    proc_stat,
    process_cpu,
    py_spy,
    redis_flush,
    scratch_database,
    scratch_release,
)
from psycopg import sql

RESULTS = ROOT / "bench" / "results" / "scoring.md"
WORKER_LOG = RESULTS.with_name("scoring-worker.log")
BROKER_URL = "redis://127.0.0.1:6379/12"
CACHE_URL = "redis://127.0.0.1:6379/13"
# One source per set of items, so each path is counted and checked on its own rows.
BATCHED, SINGLE, WARMUP, NO_MODEL = (
    "bench-scoring-batched",
    "bench-scoring-single",
    "bench-scoring-warmup",
    "bench-scoring-nomodel",
)

# --- texts ----------------------------------------------------------------------------------------

# Post-like decorations: what users add around words.
DECORATIONS = ["!", "!!", "?", "...", " 😂", " 🙏", " 🔥", " lol", " smh", ","]
SURFACES = ["post", "post", "post", "comment", "comment", "comment", "dm", "profile", "listing", "story"]


def dataset_prompts(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["prompt"] for line in f if line.strip()]


def post_length(rng: random.Random) -> int:
    """Half comments (20-200 characters), a third posts (100-500), the rest long posts (500-1,500)."""
    roll = rng.random()
    if roll < 0.5:
        return rng.randint(20, 200)
    if roll < 0.85:
        return rng.randint(100, 500)
    return rng.randint(500, 1500)


def typo(rng: random.Random, word: str) -> str:
    """A slip of the thumb: a letter dropped, doubled, swapped with the next or replaced (mostly a new word)."""
    if len(word) < 3:
        return word + word[-1]
    at = rng.randrange(len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:at] + word[at + 1 :]
    if kind == 1:
        return word[: at + 1] + word[at] * rng.randint(1, 4) + word[at + 1 :]
    if kind == 2:
        return word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    return word[:at] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[at + 1 :]


def vocabulary_line(texts: Sequence[str]) -> str:
    """How often a word (as the vectorizers split and lowercase) is new to the stream: caches per word depend on it."""
    seen: set[str] = set()
    tokens = new = 0
    for text in texts:
        for word in text.lower().split():
            tokens += 1
            if word not in seen:
                seen.add(word)
                new += 1
    return f"{tokens:,} words, {new:,} distinct ({new / max(tokens, 1):.1%} of words are a first occurrence)"


def texts_generate(prompts: Sequence[str], *, count: int, seed: int) -> list[str]:
    """Post-length texts cut from the dataset's prompts (from a random word on, continued with another prompt
    when short), with a few words swapped, shouted, decorated or mistyped, and the odd mention, hashtag or link."""
    rng = random.Random(seed)
    split = [p.split() for p in prompts if p.split()]
    vocabulary = [w for words in split for w in words]
    texts = []
    for i in range(count):
        target = post_length(rng)
        tokens: list[str] = []
        length = 0
        while length < target:
            words = rng.choice(split)
            start = rng.randrange(len(words)) if rng.random() < 0.5 else 0
            for word in words[start:]:
                r = rng.random()
                if r < 0.04:
                    word = rng.choice(vocabulary)
                elif r < 0.06:
                    word = word.upper()
                elif r < 0.09:
                    word += rng.choice(DECORATIONS)
                elif r < 0.12:
                    word = typo(rng, word)
                tokens.append(word)
                length += len(word) + 1
                if length >= target:
                    break
        text = " ".join(tokens)
        roll = rng.random()
        if roll < 0.1:
            text = f"@user{rng.randint(1, 99_999)} {text}"
        elif roll < 0.15:
            text = f"{text} #{rng.choice(vocabulary).strip('.,!?#').lower() or 'tag'}"
        elif roll < 0.18:
            text = f"{text} https://example.com/p/{i:x}"
        texts.append(text)
    return texts


def copy_rows(source: str, texts: Sequence[str], received_at: datetime, seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    return [
        (
            source,
            f"{source}-{i:07d}",
            "content",
            text,
            "[]",
            f"u{int(rng.paretovariate(1.2) * 1000)}",
            rng.choice(SURFACES),
            "en",
            "{}",
            "[]",
            0,
            "received",
            0,
            received_at,
            1,
            "[]",
            False,
        )
        for i, text in enumerate(texts)
    ]


def items_copy(conninfo: str, source: str, texts: Sequence[str], seed: int) -> list[int]:
    """COPY the texts in as 'received' items of ``source``; their ids in the order of ``texts``."""
    rows = copy_rows(source, texts, datetime.now(UTC), seed)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(ITEMS_TABLE), sql.SQL(", ").join(map(sql.Identifier, INTAKE_COLUMNS))
    )
    with psycopg.connect(conninfo) as conn:
        with conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        found = conn.execute(
            f"SELECT id, external_id FROM {ITEMS_TABLE} WHERE source = %s ORDER BY external_id", [source]
        ).fetchall()
    ids = [item_id for item_id, _ in found]
    # The progress poll counts scores by id range: each set's ids must be one run, in the order of its texts.
    if len(ids) != len(texts) or ids != list(range(ids[0], ids[0] + len(ids))):
        raise SystemExit(f"COPY stored {len(ids)} items for {source} (expected {len(texts)}), or not in one id run")
    return ids


# Where a sampled stack of a task belongs: the first phase whose every marker is in it. py-spy names a frame
# "function (path/file.py:line)"; the order matters (the version lookup inside LocalModel.score is not "score
# dicts", a connect inside any query is the connect).
PHASES: list[tuple[str, tuple[str, ...]]] = [
    ("PostgreSQL connect (Celery's Django fixup closes it around every task)", ("BaseDatabaseWrapper.connect (",)),
    ("model: TF-IDF transform (word + char n-grams)", ("FeatureUnion.transform (",)),
    ("model: 8 calibrated logistic regressions, one stacked product", ("LocalClassifier.probabilities (",)),
    ("model: artifact load (_Loaded.get)", ("_Loaded.get (",)),
    ("active-version lookup (LocalModel.current_version, twice a task)", ("current_version (",)),
    ("model: per-item score dicts (LocalModel.score)", ("LocalModel.score (",)),
    ("_already_scored: SELECT item ids already scored", ("_already_scored (",)),
    ("INSERT ClassifierScore rows", ("_call (", "insert_ignoring_conflicts (")),
    ("INSERT ClassifierScore rows", ("_call (", "bulk_create (")),
    ("INSERT ClassifierCall row", ("_call (", "create (")),
    ("circuit breaker (Redis cache)", ("CircuitBreaker.",)),
    ("budget check", ("budget_left (",)),
    ("SELECT active policies", ("policy_chains (",)),
    ("SELECT the items (id, text, language)", ("items_score (", "QuerySet.")),
    ("TextToScore objects, other pipeline Python", ("items_score (",)),
    ("task body outside items_score", ("items_score_task (",)),
]
OTHER = "Celery tracer around the task: signals, Django connection and cache closing, result"
IN_TASK = "trace_task ("


def profile_phases(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """Samples per phase, self samples per function, and the total, of the stacks inside a task.

    Between tasks the worker waits for, reads and acknowledges messages; that time is measured from the
    worker log instead, since py-spy also samples before the first send and after the last score.
    """
    phases: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if IN_TASK not in stack:
            continue
        n = int(count)
        total += n
        phases[next((label for label, marks in PHASES if all(m in stack for m in marks)), OTHER)] += n
        leaves[stack.rsplit(";", 1)[-1]] += n
    return phases, leaves, total


def profile_report(path: Path, *, title: str, in_tasks: float, items: int) -> str:
    phases, leaves, total = profile_phases(path)
    if not total:
        return f"### {title}\n\nno samples inside tasks\n"
    per_sample = in_tasks / items * 1e6 / total  # ms per 1,000 items, per sample
    lines = [
        f"### {title}",
        "",
        f"{total} samples inside tasks (waits included), spread over the tasks' {in_tasks:.2f} s of runtime "
        f"(worker log): {in_tasks / items * 1e6:.0f} ms per 1,000 items.",
        "",
        "| phase | share | ms per 1,000 items |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {n / total:.1%} | {n * per_sample:.0f} |" for label, n in phases.most_common()]
    lines += ["", "| hottest functions (self) | share |", "|---|---:|"]
    lines += [f"| `{frame}` | {n / total:.1%} |" for frame, n in leaves.most_common(15)]
    return "\n".join(lines) + "\n"


# --- the worker log -------------------------------------------------------------------------------

SUCCEEDED = re.compile(r"Task routing\.tasks\.items_score_task\[[^\]]+\] succeeded in ([0-9.]+)s")


def task_runtimes() -> list[float]:
    """Each finished scoring task's runtime as Celery logged it, in the order the worker ran them."""
    return [float(m.group(1)) for m in SUCCEEDED.finditer(WORKER_LOG.read_text(errors="replace"))]


def task_runtimes_wait(count: int) -> list[float]:
    """The runtimes once ``count`` tasks are logged (a task commits its scores before Celery logs it)."""
    deadline = time.monotonic() + 10
    while len(runtimes := task_runtimes()) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the worker log shows {len(runtimes)} finished tasks, expected {count}")
        time.sleep(0.05)
    return runtimes


# --- CPU accounting -------------------------------------------------------------------------------

# Cores used by other processes during a path above which the report says the machine was not quiet.
NOISE_CORES = 0.15


def postmaster_pid(conn: psycopg.Connection[Any]) -> int:
    stat = proc_stat(conn.info.backend_pid)
    if not stat:
        raise SystemExit("PostgreSQL runs out of this machine's sight (/proc): its CPU cannot be counted")
    return int(stat[1])


def postgres_cpu(postmaster: int, exclude: int) -> float:
    """CPU seconds of the whole PostgreSQL server so far, but for the ``exclude`` backend: the live processes,
    and the backends already gone (the worker reconnects for every task), which the postmaster has reaped."""
    stat = proc_stat(postmaster)
    total = sum(int(v) for v in stat[11:15]) / TICK if stat else 0.0  # its own and its reaped children's
    return total + sum(process_cpu(child) for child in children(postmaster) if child != exclude)


@dataclass
class CpuSnapshot:
    worker: float
    postgres: float
    bench: float
    machine_busy: float
    machine_total: float

    @classmethod
    def take(cls, worker_pid: int, conn: psycopg.Connection[Any]) -> CpuSnapshot:
        """CPU so far: the worker's; PostgreSQL's (the whole server); this script's, with its polling backend."""
        busy, total = machine_busy()
        backend = conn.info.backend_pid
        pg = postgres_cpu(postmaster_pid(conn), exclude=backend)
        return cls(process_cpu(worker_pid), pg, time.process_time() + process_cpu(backend), busy, total)


# --- the measurements -----------------------------------------------------------------------------


def scored_count(conn: psycopg.Connection[Any], ids: Sequence[int]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM routing_classifierscore WHERE backend = 'local' AND item_id BETWEEN %s AND %s",
        [min(ids), max(ids)],
    ).fetchone()
    return row[0] if row else 0


def wait_scored(
    conn: psycopg.Connection[Any], ids: Sequence[int], worker: subprocess.Popen[bytes], *, stall: float = 120
) -> float:
    """Poll until every item of ``ids`` has a local score; the moment it was seen (perf_counter)."""
    last, last_change = -1, time.monotonic()
    while True:
        count = scored_count(conn, ids)
        now = time.perf_counter()
        if count >= len(ids):
            return now
        if count != last:
            last, last_change = count, time.monotonic()
        if worker.poll() is not None:
            raise SystemExit(f"celery worker exited with {worker.returncode}:\n{WORKER_LOG.read_text()[-3000:]}")
        if time.monotonic() - last_change > stall:
            raise SystemExit(
                f"no progress for {stall:.0f} s at {count:,} of {len(ids):,} scored:\n{WORKER_LOG.read_text()[-3000:]}"
            )
        time.sleep(0.02)


@dataclass
class PathResult:
    label: str
    items: int
    tasks: int
    elapsed: float
    send: float
    cpu: tuple[CpuSnapshot, CpuSnapshot]
    runtimes: list[float] = field(default_factory=list)  # of each task, from the worker log
    profile: str = ""

    @property
    def rate(self) -> float:
        return self.items / self.elapsed

    @property
    def in_tasks(self) -> float:
        return sum(self.runtimes)


def path_run(
    label: str,
    ids: Sequence[int],
    per_task: int,
    *,
    conn: psycopg.Connection[Any],
    worker: subprocess.Popen[bytes],
    profile: Path | None,
) -> PathResult:
    """Send ``ids`` in tasks of ``per_task``; the wall time from the first send until every item has its score."""
    from routing.tasks import items_score_task

    chunks = [list(ids[i : i + per_task]) for i in range(0, len(ids), per_task)]
    print(f"{label}: {len(ids):,} items in {len(chunks):,} tasks …", flush=True)
    logged = len(task_runtimes())
    with py_spy(worker.pid, profile, "--idle") if profile else nullcontext():
        before = CpuSnapshot.take(worker.pid, conn)
        t0 = time.perf_counter()
        for chunk in chunks:
            items_score_task.delay(chunk)
        sent = time.perf_counter() - t0
        done = wait_scored(conn, ids, worker)
        after = CpuSnapshot.take(worker.pid, conn)
    runtimes = task_runtimes_wait(logged + len(chunks))[logged:]
    return PathResult(label, len(ids), len(chunks), done - t0, sent, (before, after), runtimes)


@dataclass
class Warmup:
    cold: float
    warm: float
    items: int


def warmup_run(conn: psycopg.Connection[Any], ids: Sequence[int], worker: subprocess.Popen[bytes]) -> Warmup:
    """Two tasks of the same size, one after the other: the first loads the model in the worker, the second not."""
    from routing.tasks import items_score_task

    half = len(ids) // 2
    times = []
    for part in (ids[:half], ids[half:]):
        t0 = time.perf_counter()
        items_score_task.delay(list(part))
        times.append(wait_scored(conn, part, worker) - t0)
    return Warmup(times[0], times[1], half)


@dataclass
class Reference:
    load: float  # seconds: classifier_load of the active version (fetch the artifact, check, unpickle)
    artifact_bytes: int
    categories: list[str]
    batched: float  # seconds: predict over the batched set's texts in batches
    single: float  # seconds: predict over the single set's texts one at a time
    batched_cpu: float = 0.0  # CPU seconds of this process for the same
    single_cpu: float = 0.0
    predictions: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # per source, rounded as stored
    split_batched: dict[str, float] = field(default_factory=dict)  # ms per 1,000 items, by part of predict
    split_single: dict[str, float] = field(default_factory=dict)  # ms per text, by part of predict


def rounded(probabilities: dict[str, Any], n: int) -> list[dict[str, float]]:
    """Per text, the scores as LocalModel.score stores them."""
    return [{c: round(float(p[i]), 6) for c, p in probabilities.items()} for i in range(n)]


def reference_run(texts: dict[str, list[str]], batch: int) -> Reference:
    """In-process LocalClassifier.predict on the same texts: no database, no broker, no Celery."""
    from routing.models import ModelVersion
    from routing.scoring.registry import classifier_load, model_active

    version = model_active()
    if version is None:
        raise SystemExit("no active local model after classifier_train --promote")
    size = len(ModelVersion.objects.values_list("artifact", flat=True).get(pk=version.pk))
    t0 = time.perf_counter()
    model = classifier_load(version)
    load = time.perf_counter() - t0
    ref = Reference(load, size, model.categories, 0.0, 0.0)

    batched = texts[BATCHED]
    model.predict(texts[WARMUP])  # as the worker's warm-up tasks: first calls out of the timing
    t0, cpu0 = time.perf_counter(), time.process_time()
    parts = [model.predict(batched[i : i + batch]) for i in range(0, len(batched), batch)]
    ref.batched, ref.batched_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    ref.predictions[BATCHED] = [row for part in parts for row in rounded(part, len(part[ref.categories[0]]))]

    single = texts[SINGLE]
    t0, cpu0 = time.perf_counter(), time.process_time()
    ones = [model.predict([text]) for text in single]
    ref.single, ref.single_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    ref.predictions[SINGLE] = [rounded(one, 1)[0] for one in ones]

    ref.split_batched = predict_split(model, batched[:5000], batch)
    ref.split_single = {part: ms / 1000 for part, ms in predict_split(model, single[:300], 1).items()}
    return ref


def predict_split(model: Any, texts: Sequence[str], batch: int) -> dict[str, float]:
    """Where predict's time goes, in ms per 1,000 texts: each part of the vectorizer, the estimators on its
    features, then the per-item dicts LocalModel.score builds. On a fresh copy of the model, so whatever it
    caches per process starts cold, as in the worker."""
    model = copy.deepcopy(model)
    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    split: dict[str, float] = {}

    def timed(label: str, work: Any, inputs: Sequence[Any]) -> list[Any]:
        t0 = time.perf_counter()
        out = [work(x) for x in inputs]
        split[label] = (time.perf_counter() - t0) / len(texts) * 1e6
        return out

    parts = getattr(model.vectorizer, "transformer_list", None) or [("vectorizer", model.vectorizer)]
    for name, part in parts:
        steps = getattr(part, "steps", None)
        kind = " + ".join(type(step).__name__ for _, step in steps) if steps else type(part).__name__
        timed(f"{name} ({kind})", part.transform, chunks)
    features = [model.vectorizer.transform(chunk) for chunk in chunks]
    probabilities = timed(f"{len(model.estimators)} calibrated regressions, stacked", model.probabilities, features)
    timed("per-item score dicts", lambda p: rounded(p, len(next(iter(p.values())))), probabilities)
    return split


def pipeline_without_model(ids: Sequence[int], scores: Sequence[dict[str, float]], batch: int) -> tuple[float, float]:
    """Seconds (and this process's CPU seconds) for in-process ``items_score`` over ``ids[1:]`` in batches, with the
    model's answer precomputed: everything the pipeline does around the model (queries, inserts, breaker), without
    Celery."""
    from django.db import connections

    from routing.scoring import pipeline
    from routing.scoring.base import BatchScores, ItemScores
    from routing.scoring.registry import LocalModel

    by_id = dict(zip(ids, scores, strict=True))

    class Precomputed(LocalModel):
        def score(self, texts: Any, *, policies: Any) -> BatchScores:
            version = self.current_version()
            items = [ItemScores(t.item_id, by_id[t.item_id]) for t in texts]
            return BatchScores(model=version.name, model_version=version.label, items=items)

    real = pipeline.BACKENDS[LocalModel.name]
    pipeline.BACKENDS[LocalModel.name] = Precomputed()
    try:
        pipeline.items_score(item_ids=ids[:1])  # connection and first queries out of the timing
        t0, cpu0 = time.perf_counter(), time.process_time()
        for i in range(1, len(ids), batch):
            pipeline.items_score(item_ids=ids[i : i + batch])
        return time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        pipeline.BACKENDS[LocalModel.name] = real
        connections.close_all()


# --- checks ---------------------------------------------------------------------------------------


@dataclass
class Check:
    items: int
    score_rows: int = 0
    duplicates: int = 0
    missing: int = 0
    other_backends: int = 0
    wrong_version: int = 0
    wrong_categories: int = 0
    out_of_range: int = 0
    differing: int = 0  # scores not equal to the in-process prediction of the same text
    max_difference: float = 0.0
    calls: int = 0

    @property
    def ok(self) -> bool:
        wrong = (self.duplicates, self.missing, self.other_backends, self.wrong_version, self.wrong_categories)
        return self.score_rows == self.items and not any(wrong) and not self.out_of_range and not self.differing

    def describe(self) -> str:
        text = (
            f"{self.score_rows:,} local scores for {self.items:,} items: {self.duplicates} duplicated, "
            f"{self.missing} missing, {self.other_backends} other-backend rows, {self.wrong_version} of another "
            f"version, {self.wrong_categories} with other categories, {self.out_of_range} values outside [0, 1], "
            f"{self.differing} differing from in-process predict (max |Δ| {self.max_difference:.1e})"
        )
        return ("ok: " if self.ok else "WRONG: ") + text


def scores_check(conn: psycopg.Connection[Any], source: str, expected: Sequence[dict[str, float]], label: str) -> Check:
    """Exactly one local score per item, of the active version, for every category, each in [0, 1], equal to
    what the same model gives in-process for the same text."""
    check = Check(items=len(expected))
    rows = conn.execute(
        "SELECT i.external_id, s.backend, s.model_version, s.scores, s.call_id FROM routing_classifierscore s "
        "JOIN queues_reviewitem i ON i.id = s.item_id WHERE i.source = %s",
        [source],
    ).fetchall()
    local = [r for r in rows if r[1] == "local"]
    check.score_rows = len(local)
    check.other_backends = len(rows) - len(local)
    seen = Counter(external_id for external_id, *_ in local)
    check.duplicates = sum(n - 1 for n in seen.values())
    check.missing = len(expected) - len(seen)
    check.calls = len({call for *_, call in local})
    categories = set(expected[0]) if expected else set()
    for external_id, _, version, scores, _ in local:
        check.wrong_version += version != label
        check.wrong_categories += set(scores) != categories
        values = list(scores.values())
        check.out_of_range += sum(not isinstance(v, int | float) or not 0.0 <= v <= 1.0 for v in values)
        want = expected[int(external_id.rsplit("-", 1)[1])]
        difference = max((abs(scores.get(c, -9) - p) for c, p in want.items()), default=0.0)
        check.max_difference = max(check.max_difference, difference)
        check.differing += difference > 2e-6  # rounding to 6 places of the same float, either side
    return check


def statistics_gather(conn: psycopg.Connection[Any]) -> str:
    """ANALYZE the scratch database once the warm-up has scored its items, as autovacuum would have in a live
    database; without statistics the planner reads ``_already_scored``'s query through the (backend,
    model_version, created_at) index, every score of the version for each call. Returns the autovacuum setting."""
    conn.execute("ANALYZE")
    row = conn.execute("SHOW autovacuum").fetchone()
    return str(row[0]) if row else "?"


def failures_count(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """Dead letters, and classifier calls with another outcome than 'ok'."""
    dead = conn.execute("SELECT count(*) FROM routing_deadletter").fetchone()
    calls = conn.execute("SELECT count(*) FROM routing_classifiercall WHERE outcome <> 'ok'").fetchone()
    return (dead[0] if dead else -1), (calls[0] if calls else -1)


# --- the report -----------------------------------------------------------------------------------


def worker_cpu(result: PathResult) -> float:
    before, after = result.cpu
    return after.worker - before.worker


def others_cores(result: PathResult) -> float:
    """Cores the rest of the machine used during a path (neither the worker, PostgreSQL nor this script)."""
    before, after = result.cpu
    ours = (after.worker - before.worker) + (after.postgres - before.postgres) + (after.bench - before.bench)
    return max(0.0, (after.machine_busy - before.machine_busy) - ours) / result.elapsed


def cores(result: PathResult) -> str:
    """CPU during a path, in cores: what the worker got, and what else the machine did meanwhile."""
    before, after = result.cpu
    worker, postgres, bench = (
        after.worker - before.worker,
        after.postgres - before.postgres,
        after.bench - before.bench,
    )
    share = (after.machine_busy - before.machine_busy) / (after.machine_total - before.machine_total)
    return (
        f"worker {worker / result.elapsed:.2f}, PostgreSQL (whole server) {postgres / result.elapsed:.2f}, bench "
        f"client (send + poll) {bench / result.elapsed:.2f}, anything else {others_cores(result):.2f} "
        f"(machine {share:.0%} busy)"
    )


def percentile(values: Sequence[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Run:
    args: argparse.Namespace
    label: str
    train_seconds: float
    texts: dict[str, list[str]]
    reference: Reference
    no_model: tuple[int, float, float]  # items, seconds, CPU seconds
    warmup: Warmup
    autovacuum: str
    batched: PathResult
    single: PathResult
    checks: dict[str, Check]
    failures: tuple[int, int]


def report_render(run: Run, machine: str) -> str:
    args, ref, batched, single = run.args, run.reference, run.batched, run.single
    target = args.target
    n_batched, n_single = len(run.texts[BATCHED]), len(run.texts[SINGLE])
    no_model_items, no_model_seconds, no_model_cpu = run.no_model
    verdict = "met" if batched.rate >= target else "MISSED"
    rows = [
        (f"**Celery worker, {args.batch} items a task**", f"{batched.items:,}", f"{batched.tasks:,}",
         f"{batched.elapsed:.2f}", f"**{batched.rate:,.0f}**", f"{worker_cpu(batched):.2f}",
         f"**{verdict}** ({batched.rate / target:.0%})"),
        ("Celery worker, one item a task", f"{single.items:,}", f"{single.tasks:,}", f"{single.elapsed:.2f}",
         f"{single.rate:,.0f}", f"{worker_cpu(single):.2f}", f"{batched.rate / single.rate:.1f}x slower than batched"),
        (f"reference: in-process `LocalClassifier.predict`, {args.batch} texts a call", f"{n_batched:,}", "—",
         f"{ref.batched:.2f}", f"{n_batched / ref.batched:,.0f}", f"{ref.batched_cpu:.2f}",
         "ceiling of the batched path"),
        ("reference: in-process `LocalClassifier.predict`, one text a call", f"{n_single:,}", "—",
         f"{ref.single:.2f}", f"{n_single / ref.single:,.0f}", f"{ref.single_cpu:.2f}", "ceiling of the one-item path"),
        (f"reference: in-process `items_score`, model answer precomputed, {args.batch} a call", f"{no_model_items:,}",
         "—", f"{no_model_seconds:.2f}", f"{no_model_items / no_model_seconds:,.0f}", f"{no_model_cpu:.2f}",
         "the pipeline's database work alone"),
    ]  # fmt: skip
    lines = [
        "## Scoring benchmark",
        "",
        f"Local model `{run.label}` scoring through one Celery worker process (solo pool) on Redis, "
        f"target {target:,.0f} items/s on the batched path. CPU s: the worker's for the worker paths, this "
        "script's for the in-process references (PostgreSQL's not included).",
        "",
        "| path | items | tasks | elapsed s | items/s | CPU s | vs target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    busy = [f"{r.label} {others_cores(r):.2f}" for r in (batched, single) if others_cores(r) > NOISE_CORES]
    if busy:
        lines += [
            "",
            f"**The machine was not quiet**: other processes used CPU during the run ({', '.join(busy)} cores), "
            "so the worker got less; the figures are pessimistic. Rerun on a quiet machine.",
        ]

    per_k = 1e6  # seconds per item -> ms per 1,000 items
    worker_ms = batched.elapsed / batched.items * per_k
    predict_ms = ref.batched / n_batched * per_k
    db_ms = no_model_seconds / no_model_items * per_k
    in_task_ms = batched.in_tasks / batched.items * per_k
    lengths = [len(t) for t in run.texts[BATCHED]]
    warm = run.warmup
    details = [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", machine),
        (
            "model",
            f"`{run.label}`: {len(ref.categories)} categories ({', '.join(ref.categories)}); artifact "
            f"{ref.artifact_bytes / 1e6:.1f} MB; trained on {DATASET.name} in {run.train_seconds:.0f} s "
            "(`classifier_train --promote`)",
        ),
        (
            "texts",
            f"cut from the dataset's prompts and perturbed; {statistics_line(lengths)} characters; "
            + vocabulary_line(run.texts[BATCHED]),
        ),
        (
            "worker",
            "`celery -A ops_platform worker -Q triage --pool solo --concurrency 1`, prefetch 1, log level INFO, "
            f"broker {BROKER_URL}, cache {CACHE_URL}"
            + (" (sampled by py-spy: slower than without)" if args.profile else ""),
        ),
        (
            "database statistics",
            f"ANALYZE once after the warm-up, as in a live database (autovacuum is {run.autovacuum} on this server)",
        ),
        (
            "model load (one-off, not counted)",
            f"in-process `classifier_load` {ref.load:.2f} s; first task on the fresh worker {warm.cold:.2f} s for "
            f"{warm.items} items, the next {warm.warm:.2f} s: {warm.cold - warm.warm:.2f} s of load",
        ),
        (
            "sending",
            f"batched {batched.send:.2f} s for {batched.tasks} tasks, one-item {single.send:.2f} s for "
            f"{single.tasks:,} (the worker scores meanwhile)",
        ),
        ("CPU in cores, batched", cores(batched)),
        ("CPU in cores, one item a task", cores(single)),
        (
            "batched, ms per 1,000 items",
            f"elapsed {worker_ms:.0f} = inside tasks {in_task_ms:.0f} (runtimes in the worker log) + between "
            f"tasks {worker_ms - in_task_ms:.0f} (fetch, ack, log, and the poll's 20 ms); in-process: predict "
            f"{predict_ms:.0f} + the pipeline's database work {db_ms:.0f} = {predict_ms + db_ms:.0f}",
        ),
        (
            "batched, if only the tasks' runtime counted",
            f"{batched.items / batched.in_tasks:,.0f} items/s; task runtime p50 {median(batched.runtimes):.3f} s, "
            f"max {max(batched.runtimes):.3f} s; {batched.items / max(worker_cpu(batched), 1 / TICK):,.0f} items "
            "per worker CPU-second (the rate with a core to itself, were it never waiting)",
        ),
        (
            f"predict split, ms per 1,000 texts, {args.batch} a call",
            ", ".join(f"{part} {ms:.0f}" for part, ms in ref.split_batched.items()),
        ),
        (
            "predict split, ms per text, one a call",
            ", ".join(f"{part} {ms:.2f}" for part, ms in ref.split_single.items()),
        ),
        (
            "one item a task, ms per task",
            f"elapsed {single.elapsed / single.tasks * 1000:.1f} = inside the task "
            f"{single.in_tasks / single.tasks * 1000:.1f} + between tasks "
            f"{(single.elapsed - single.in_tasks) / single.tasks * 1000:.1f}; in-process predict of one text "
            f"{ref.single / n_single * 1000:.1f}",
        ),
        ("check, batched", run.checks[BATCHED].describe() + f"; {run.checks[BATCHED].calls} model calls"),
        ("check, one item a task", run.checks[SINGLE].describe() + f"; {run.checks[SINGLE].calls:,} model calls"),
        ("dead letters / failed calls", f"{run.failures[0]} / {run.failures[1]}"),
    ]
    width = max(len(label) for label, _ in details)
    lines += ["", f"| {'':<{width}} | |", f"|{'-' * (width + 2)}|---|"]
    lines += [f"| {label:<{width}} | {value} |" for label, value in details]
    text = "\n".join(lines) + "\n"
    for result in (batched, single):
        if result.profile:
            text += "\n" + result.profile
    return text


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def statistics_line(lengths: Sequence[int]) -> str:
    return (
        f"mean {sum(lengths) / len(lengths):.0f}, p10 {percentile(lengths, 0.1)}, p50 {percentile(lengths, 0.5)}, "
        f"p90 {percentile(lengths, 0.9)}, max {max(lengths)}"
    )


# --- the run --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000, help="items for the batched path")
    parser.add_argument("--batch", type=int, default=500, help="items per task on the batched path")
    parser.add_argument("--single-items", type=int, default=2_000, help="items for the one-item-per-task path")
    parser.add_argument("--warmup-items", type=int, default=100, help="split over the two warm-up tasks")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/ops_bench_scoring")
    parser.add_argument("--dataset", type=Path, default=DATASET, help="the labeled set to train on")
    parser.add_argument("--target", type=float, default=2000, help="items/s on the batched path to call it a pass")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="sample the worker with py-spy (slows it)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    if min(args.batch, args.single_items) < 1 or min(args.items, args.warmup_items) < 2:
        raise SystemExit("--batch and --single-items must be positive, --items and --warmup-items at least 2")
    if not args.dataset.exists():
        raise SystemExit(f"{args.dataset} not found (the shared datasets live in ../shared/datasets/)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)

    conninfo, dbname, admin = scratch_database(args.database_url)
    env = app_env(
        args.database_url,
        CELERY_BROKER_URL=BROKER_URL,
        CELERY_TASK_ALWAYS_EAGER="false",
        CACHE_URL=CACHE_URL,
        SCORING_DEFAULT_CHAIN="local",
    )

    prompts = dataset_prompts(args.dataset)
    texts = {
        BATCHED: texts_generate(prompts, count=args.items, seed=args.seed),
        SINGLE: texts_generate(prompts, count=args.single_items, seed=args.seed + 1),
        WARMUP: texts_generate(prompts, count=args.warmup_items, seed=args.seed + 2),
    }
    texts[NO_MODEL] = texts[BATCHED][:5001]  # the first one connects and warms up, untimed
    print(f"recreating database {dbname}, migrating …", flush=True)
    database_recreate(admin, dbname)
    redis_flush(BROKER_URL, CACHE_URL)
    try:
        manage(env, "migrate", "--noinput")
        label, train_seconds = model_train(env, args.dataset, actor="bench/scoring.py")
        print(f"model {label} trained and promoted in {train_seconds:.0f} s", flush=True)
        # Django here too: to send tasks and run the in-process references.
        django_setup(env, refuse_eager="tasks would run in this process, not in the worker")
        ids = {source: items_copy(conninfo, source, batch, seed=n) for n, (source, batch) in enumerate(texts.items())}
        print(f"{sum(map(len, ids.values())):,} items created; starting the worker …", flush=True)
        profiles = {path: RESULTS.with_name(f"scoring-profile-{path}.txt") for path in ("batched", "single")}
        with (
            psycopg.connect(conninfo, autocommit=True) as conn,
            celery_worker(env, log=WORKER_LOG, name="bench-scoring") as worker,
        ):
            warmup = warmup_run(conn, ids[WARMUP], worker)
            print(f"worker warm: first task {warmup.cold:.2f} s, second {warmup.warm:.2f} s", flush=True)
            autovacuum = statistics_gather(conn)
            print("in-process references while the worker idles …", flush=True)
            reference = reference_run(texts, args.batch)
            no_model_ids = ids[NO_MODEL]
            no_model_seconds, no_model_cpu = pipeline_without_model(
                no_model_ids, reference.predictions[BATCHED][: len(no_model_ids)], args.batch
            )
            batched = path_run(
                f"batched ({args.batch} a task)", ids[BATCHED], args.batch, conn=conn, worker=worker,
                profile=profiles["batched"] if args.profile else None,
            )  # fmt: skip
            single = path_run(
                "one item a task", ids[SINGLE], 1, conn=conn, worker=worker,
                profile=profiles["single"] if args.profile else None,
            )  # fmt: skip
        if args.profile:
            batched.profile = profile_report(
                profiles["batched"], title="Where the batched tasks' time goes (py-spy)", in_tasks=batched.in_tasks,
                items=batched.items,
            )  # fmt: skip
            single.profile = profile_report(
                profiles["single"], title="Where the one-item tasks' time goes (py-spy)",
                in_tasks=single.in_tasks, items=single.items,
            )  # fmt: skip

        with psycopg.connect(conninfo) as conn:
            checks = {
                source: scores_check(conn, source, reference.predictions[source], label) for source in (BATCHED, SINGLE)
            }
            failures = failures_count(conn)
        machine = f"{machine_description(conninfo)}, {platform.platform(terse=True)}"
        run = Run(
            args=args,
            label=label,
            train_seconds=train_seconds,
            texts=texts,
            reference=reference,
            no_model=(len(no_model_ids) - 1, no_model_seconds, no_model_cpu),
            warmup=warmup,
            autovacuum=autovacuum,
            batched=batched,
            single=single,
            checks=checks,
            failures=failures,
        )
        text = report_render(run, machine)
        print("\n" + text)
        if not args.no_write:
            RESULTS.write_text(text)
            print(f"written to {RESULTS.relative_to(ROOT)}; worker log {WORKER_LOG.relative_to(ROOT)}")
        ok = all(check.ok for check in checks.values()) and failures == (0, 0)
        if not ok:
            print("FAILED: " + "; ".join(f"{source}: {check.describe()}" for source, check in checks.items()))
        return 0 if ok else 1
    finally:
        redis_flush(BROKER_URL, CACHE_URL)
        scratch_release(admin, dbname, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
