"""Local-model scoring throughput through a real Celery worker on Redis: batched tasks against one item per task.

.venv/bin/python bench/scoring.py [--items 20000] [--batch 500] [--single-items 2000] [--keep]
"""

from __future__ import annotations

import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchlib
import psycopg

from tests.support.datasets import LABELLED_SET, labelled_rows
from tests.support.processes import Worker, children, model_train, running

RESULT = benchlib.RESULTS / "scoring.md"
WORKER_LOG = benchlib.RESULTS / "scoring-worker.log"
BROKER_URL = "redis://127.0.0.1:6379/12"
CACHE_URL = "redis://127.0.0.1:6379/13"
# One source per set of items, so each path is counted and checked on its own rows.
BATCHED, SINGLE, WARMUP = (f"bench-scoring-{s}" for s in ("batched", "single", "warmup"))
DECORATIONS = ["!", "!!", "?", "...", " 😂", " 🙏", " 🔥", " lol", " smh", ","]  # what users add around words
# Cores used by other processes during a path above which the report says the machine was not quiet.
NOISE_CORES = 0.15


def post_length(rng: random.Random) -> int:
    """Half comments (20-200 characters), a third posts (100-500), the rest long posts (500-1,500)."""
    roll = rng.random()
    if roll < 0.5:
        return rng.randint(20, 200)
    return rng.randint(100, 500) if roll < 0.85 else rng.randint(500, 1500)


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


def texts_generate(prompts: Sequence[str], *, count: int, seed: int) -> list[str]:
    """Post-length texts cut from the prompts and perturbed, so that new words come at a realistic rate."""
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


def items_copy(conninfo: str, source: str, texts: Sequence[str], seed: int) -> list[int]:
    """COPY the texts in as 'received' items of ``source``; their ids, one run (the poll counts by id range)."""
    from queues.models import ReviewItem

    rng, now = random.Random(seed), datetime.now(UTC)
    items = (
        {"external_id": f"{source}-{i:07d}", "text": text, "surface": rng.choice(benchlib.SURFACES), "language": "en"}
        | {"author_ref": f"u{int(rng.paretovariate(1.2) * 1000)}"}
        for i, text in enumerate(texts)
    )
    with psycopg.connect(conninfo) as conn:
        benchlib.copy_rows(
            conn, ReviewItem, benchlib.INTAKE_FIELDS, (benchlib.intake_row(item, source, now) for item in items)
        )
    ids = list(ReviewItem.objects.filter(source=source).order_by("external_id").values_list("pk", flat=True))
    if len(ids) != len(texts) or ids != list(range(ids[0], ids[0] + len(ids))):
        raise SystemExit(f"COPY stored {len(ids)} items for {source} (expected {len(texts)}), or not in one id run")
    return ids


def postgres_cpu(conn: psycopg.Connection[Any]) -> float:
    """CPU seconds of the PostgreSQL server (its reaped and live processes) but for this script's backend."""
    backend = conn.info.backend_pid
    postmaster = int(benchlib.proc_stat(backend)[1])
    stat = benchlib.proc_stat(postmaster)
    total = sum(int(v) for v in stat[11:15]) / benchlib.TICK if stat else 0.0
    return total + sum(benchlib.process_cpu(child) for child in children(postmaster) if child != backend)


def wait_scored(conn: psycopg.Connection[Any], table: str, ids: Sequence[int], worker: Worker) -> float:
    """Poll until every item of ``ids`` has a local score; the moment it was seen (perf_counter)."""
    last, last_change = -1, time.monotonic()
    while True:
        row = conn.execute(
            f"SELECT count(*) FROM {table} WHERE backend = 'local' AND item_id BETWEEN %s AND %s", [min(ids), max(ids)]
        ).fetchone()
        now, count = time.perf_counter(), row[0] if row else 0
        if count >= len(ids):
            return now
        if count != last:
            last, last_change = count, time.monotonic()
        if worker.proc is None or worker.proc.poll() is not None:
            raise SystemExit(f"celery worker exited:\n{worker.tail()}")
        if time.monotonic() - last_change > 120:
            raise SystemExit(f"no progress for 120 s at {count:,} of {len(ids):,} scored:\n{worker.tail()}")
        time.sleep(0.02)


@dataclass
class PathResult:
    label: str
    items: int
    tasks: int
    elapsed: float
    cpu: benchlib.Usage

    @property
    def rate(self) -> float:
        return self.items / self.elapsed

    def worker_cpu(self) -> float:
        return self.cpu.groups["worker"]


def path_run(label: str, ids: Sequence[int], per_task: int, meter: benchlib.CpuMeter, poll: Any) -> PathResult:
    """Send ``ids`` in tasks of ``per_task``; the wall time from the first send until every item has its score."""
    from routing.tasks import items_score_task

    chunks = [list(ids[i : i + per_task]) for i in range(0, len(ids), per_task)]
    print(f"{label}: {len(ids):,} items in {len(chunks):,} tasks …", flush=True)
    before = meter.snapshot()
    t0 = time.perf_counter()
    for chunk in chunks:
        items_score_task.delay(chunk)
    done = poll(ids)
    cpu = meter.usage(before, meter.snapshot())
    return PathResult(label, len(ids), len(chunks), done - t0, cpu)


def rounded(probabilities: dict[str, Any], n: int) -> list[dict[str, float]]:
    """Per text, the scores as LocalModel.score stores them."""
    return [{c: round(float(p[i]), 6) for c, p in probabilities.items()} for i in range(n)]


@dataclass
class Reference:
    """In-process ``LocalClassifier.predict`` on the same texts: no database, no broker, no Celery."""

    artifact_bytes: int
    categories: list[str]
    seconds: dict[str, tuple[float, float]] = field(default_factory=dict)  # per source: wall, CPU seconds
    predictions: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # per source, rounded as stored


def reference_run(texts: dict[str, list[str]], batch: int) -> Reference:
    from routing.models import ModelVersion
    from routing.scoring.registry import classifier_load, model_active

    version = model_active()
    if version is None:
        raise SystemExit("no active local model after classifier_train --promote")
    size = len(ModelVersion.objects.values_list("artifact", flat=True).get(pk=version.pk))
    model = classifier_load(version)
    ref = Reference(size, model.categories)
    model.predict(texts[WARMUP])  # as the worker's warm-up tasks: first calls out of the timing
    for source, per_call in ((BATCHED, batch), (SINGLE, 1)):
        t0, cpu0 = time.perf_counter(), time.process_time()
        parts = [model.predict(texts[source][i : i + per_call]) for i in range(0, len(texts[source]), per_call)]
        ref.seconds[source] = time.perf_counter() - t0, time.process_time() - cpu0
        ref.predictions[source] = [row for part in parts for row in rounded(part, len(part[ref.categories[0]]))]
    return ref


def scores_check(source: str, expected: Sequence[dict[str, float]], label: str) -> tuple[dict[str, int], int]:
    """Counts that must be 0 (a score missing, duplicated or unlike in-process predict's), and the model calls."""
    from routing.models import ClassifierScore

    rows = ClassifierScore.objects.filter(item__source=source)
    local = list(rows.filter(backend="local").values_list("item__external_id", "model_version", "scores", "call_id"))
    seen = Counter(external_id for external_id, *_ in local)
    categories = set(expected[0]) if expected else set()
    counts = Counter(
        {
            "rows of another backend": rows.exclude(backend="local").count(),
            "duplicated": sum(n - 1 for n in seen.values()),
            "missing": len(expected) - len(seen),
        }
    )
    for external_id, version, scores, _ in local:
        counts["of another version"] += version != label
        counts["with other categories"] += set(scores) != categories
        counts["values outside [0, 1]"] += sum(
            not isinstance(v, int | float) or not 0 <= v <= 1 for v in scores.values()
        )
        want = expected[int(external_id.rsplit("-", 1)[1])]
        # Rounding to 6 places of the same float, either side.
        counts["differing from in-process predict"] += any(abs(scores.get(c, -9) - p) > 2e-6 for c, p in want.items())
    return counts, len({call for *_, call in local})


def main() -> int:
    parser = benchlib.parser(__doc__, "ops_bench_scoring")
    parser.add_argument("--items", type=int, default=20_000, help="items for the batched path")
    parser.add_argument("--batch", type=int, default=500, help="items per task on the batched path")
    parser.add_argument("--single-items", type=int, default=2_000, help="items for the one-item-per-task path")
    parser.add_argument("--warmup-items", type=int, default=100, help="split over the two warm-up tasks")
    parser.add_argument("--dataset", type=Path, default=LABELLED_SET, help="the labelled set to train on")
    parser.add_argument("--target", type=float, default=2000, help="items/s on the batched path to call it a pass")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if min(args.batch, args.single_items) < 1 or min(args.items, args.warmup_items) < 2:
        raise SystemExit("--batch and --single-items must be positive, --items and --warmup-items at least 2")
    prompts = [row["prompt"] for row in labelled_rows(args.dataset)]
    texts = {
        BATCHED: texts_generate(prompts, count=args.items, seed=args.seed),
        SINGLE: texts_generate(prompts, count=args.single_items, seed=args.seed + 1),
        WARMUP: texts_generate(prompts, count=args.warmup_items, seed=args.seed + 2),
    }
    with benchlib.scratch(args, celery=(BROKER_URL, CACHE_URL), SCORING_DEFAULT_CHAIN="local") as db:
        conninfo, env = db.conninfo, db.env
        label, train_seconds, _ = model_train(env, args.dataset, actor="bench/scoring.py")
        print(f"model {label} trained and promoted in {train_seconds:.0f} s", flush=True)
        benchlib.django_setup(env, refuse_eager="tasks would run in this process, not in the worker")
        from routing.models import ClassifierCall, ClassifierScore, DeadLetter
        from routing.tasks import items_score_task

        ids = {source: items_copy(conninfo, source, batch, seed=n) for n, (source, batch) in enumerate(texts.items())}
        print(f"{sum(map(len, ids.values())):,} items created; starting the worker …", flush=True)
        worker = Worker(env, WORKER_LOG, name="bench-scoring")
        with psycopg.connect(conninfo, autocommit=True) as conn, running(worker):
            scores_table = ClassifierScore._meta.db_table

            def poll(part: Sequence[int]) -> float:
                return wait_scored(conn, scores_table, part, worker)

            # Two tasks of the same size, one after the other: the first loads the model in the worker.
            warm, half = [], len(ids[WARMUP]) // 2
            for part in (ids[WARMUP][:half], ids[WARMUP][half:]):
                t0 = time.perf_counter()
                items_score_task.delay(list(part))
                warm.append(poll(part) - t0)
            print(f"worker warm: first task {warm[0]:.2f} s, second {warm[1]:.2f} s", flush=True)
            # As autovacuum would have in a live database (docs/performance.md, scoring).
            conn.execute("ANALYZE")
            autovacuum = (conn.execute("SHOW autovacuum").fetchone() or ["?"])[0]
            print("in-process references while the worker idles …", flush=True)
            ref = reference_run(texts, args.batch)
            meter = benchlib.CpuMeter(
                {
                    "worker": lambda: benchlib.process_cpu(worker.pid or 0),
                    "PostgreSQL (whole server)": lambda: postgres_cpu(conn),
                    "bench client (send + poll)": lambda: (
                        time.process_time() + benchlib.process_cpu(conn.info.backend_pid)
                    ),
                }
            )
            batched = path_run(f"batched ({args.batch} a task)", ids[BATCHED], args.batch, meter, poll)
            single = path_run("one item a task", ids[SINGLE], 1, meter, poll)
        checks = {source: scores_check(source, ref.predictions[source], label) for source in (BATCHED, SINGLE)}
        failures = DeadLetter.objects.count(), ClassifierCall.objects.exclude(outcome="ok").count()

        target, n_batched, n_single = args.target, len(texts[BATCHED]), len(texts[SINGLE])
        verdict = "met" if batched.rate >= target else "MISSED"
        (ref_batched, ref_batched_cpu), (ref_single, ref_single_cpu) = ref.seconds[BATCHED], ref.seconds[SINGLE]

        def row(name: str, items: int, tasks: Any, seconds: float, cpu: float, note: str, bold: str = "") -> str:
            rate = f"{bold}{items / seconds:,.0f}{bold}"
            tasks = f"{tasks:,}" if isinstance(tasks, int) else tasks
            return f"| {bold}{name}{bold} | {items:,} | {tasks} | {seconds:.2f} | {rate} | {cpu:.2f} |{note}"

        b, one = batched, single
        predict = "reference: in-process `LocalClassifier.predict`,"
        cb, cs = " ceiling of the batched path |", " ceiling of the one-item path |"
        table = [
            "| path | items | tasks | elapsed s | items/s | CPU s | vs target |",
            "|---|---:|---:|---:|---:|---:|---|",
            row(f"Celery worker, {args.batch} items a task", b.items, b.tasks, b.elapsed, b.worker_cpu(), "", "**")
            + f" **{verdict}** ({b.rate / target:.0%}) |",
            row("Celery worker, one item a task", one.items, one.tasks, one.elapsed, one.worker_cpu(), "")
            + f" {b.rate / one.rate:.1f}x slower than batched |",
            row(f"{predict} {args.batch} texts a call", n_batched, "—", ref_batched, ref_batched_cpu, cb),
            row(f"{predict} one text a call", n_single, "—", ref_single, ref_single_cpu, cs),
        ]
        busy = [f"{r.label} {r.cpu.others:.2f}" for r in (batched, single) if r.cpu.others > NOISE_CORES]
        if busy:
            table.append(
                f"\n**The machine was not quiet**: other processes used CPU during the run ({', '.join(busy)} cores), "
                "so the worker got less; the figures are pessimistic. Rerun on a quiet machine."
            )
        r = benchlib.Report("Scoring benchmark")
        r.intro = (
            f"Local model `{label}` scoring through one Celery worker process (solo pool) on Redis, target "
            f"{target:,.0f} items/s on the batched path. CPU s: the worker's for the worker paths, this script's for "
            "the in-process references (PostgreSQL's not included).\n\n" + "\n".join(table)
        )
        lengths = [len(t) for t in texts[BATCHED]]
        r.stamp(conninfo, platform.platform(terse=True))
        r.add(
            "model",
            f"`{label}`: {len(ref.categories)} categories ({', '.join(ref.categories)}); artifact "
            f"{ref.artifact_bytes / 1e6:.1f} MB; trained on {args.dataset.name} in {train_seconds:.0f} s",
        )
        r.add(
            "texts",
            f"cut from the dataset's prompts and perturbed; mean {sum(lengths) / len(lengths):.0f}, "
            + benchlib.quantiles(lengths, (0.1, 0.5, 0.9), ".0f")
            + f", max {max(lengths)} characters",
        )
        r.add("database statistics", f"ANALYZE once after the warm-up (autovacuum is {autovacuum} on this server)")
        for source, name in ((BATCHED, "batched"), (SINGLE, "one item a task")):
            counts, calls = checks[source]
            described = ", ".join(f"{n} {what}" for what, n in counts.items())
            r.add(
                f"check, {name}", f"{'ok' if not any(counts.values()) else 'WRONG'}: {described}; {calls:,} model calls"
            )
        r.add("dead letters / failed calls", f"{failures[0]} / {failures[1]}")
        ok = not any(any(counts.values()) for counts, _ in checks.values()) and failures == (0, 0)
        return r.finish(RESULT, write=not args.no_write, ok=ok, failure="a score is missing, duplicated or wrong")


if __name__ == "__main__":
    sys.exit(main())
