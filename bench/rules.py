"""Routing rules: rows/s of a realistic 50-rule intake set (compiled, interpreted, vectorized) and the time to
backtest it over a million stored items in PostgreSQL, against a raw COPY of the same columns."""

from __future__ import annotations

import gc
import json
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import benchlib
import numpy as np
import psycopg
from benchlib import names, timed
from psycopg import sql

from tests.support.rule_world import BASELINE_RULES, World, world_create

RESULT = benchlib.RESULTS / "rules.md"
DAYS = 14


CATEGORIES = names("hate harassment violence self-harm sexual sexual/minors hate/threatening violence/graphic")
# How often each category is the one an elevated item is elevated in.
ELEVATED_WEIGHTS = [0.20, 0.30, 0.14, 0.07, 0.20, 0.01, 0.03, 0.05]
VOCABULARY = {
    **benchlib.VOCABULARY,
    "en": (
        "the this is not what I said about your post and you know it honestly people like you should stop buy cheap "
        "followers now click link in bio free great photo love it thanks for sharing anyone else seeing this report "
        "spam account again meeting tomorrow at noon see you there lol that was hilarious worst service ever never "
        "again game last night was wild who is coming new recipe turned out better than expected my dog ate it"
    ),
}
WORDS = {language: text.split() for language, text in VOCABULARY.items()}
# Phrases rules look for, which a small share of texts carry.
PHRASES = names(
    "kill yourself|KYS|kill myself|end it all|double your money|crypto giveaway|DM me|telegram|WhatsApp me|"
    "guaranteed return|investment opportunity|western union|gift card|election|ballot|onlyfans",
    sep="|",
)


@dataclass
class Items:
    """Generated items in arrival order: their first 11 ITEM_FIELDS, scores and seconds into the period."""

    fields: list[tuple[Any, ...]]
    scores: list[dict[str, float]]
    offset_seconds: np.ndarray


def scores_generate(rng: np.random.Generator, reported: np.ndarray) -> np.ndarray:
    """(n, 8) probabilities: low for most items; one category (and its parent) high for a few; reports more often."""
    n = len(reported)
    values = rng.beta(0.6, 40.0, size=(n, len(CATEGORIES)))
    elevated = rng.random(n) < np.where(reported, 0.25, 0.06)
    rows = np.flatnonzero(elevated)
    which = rng.choice(len(CATEGORIES), size=len(rows), p=ELEVATED_WEIGHTS)
    high = rng.beta(2.0, 1.4, size=len(rows))
    values[rows, which] = high
    parent = {CATEGORIES.index(c): CATEGORIES.index(p) for c, p in CATEGORY_PARENTS.items()}
    for child, mother in parent.items():
        hit = rows[which == child]
        values[hit, mother] = np.maximum(values[hit, mother], high[which == child] * rng.uniform(0.7, 1.0, len(hit)))
    return np.round(values, 4)


CATEGORY_PARENTS = {"hate/threatening": "hate", "violence/graphic": "violence", "sexual/minors": "sexual"}


def items_generate(count: int, *, seed: int) -> Items:
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    reported = nprng.random(count) < 0.15
    report_count = np.where(reported, nprng.geometric(0.3, count), 0)
    matrix = scores_generate(nprng, reported)
    # An older model version did not score the sub-categories: 2% of score rows lack them (NaN in rules).
    partial = nprng.random(count) < 0.02
    followers = np.minimum(nprng.lognormal(5.0, 2.2, count).astype(np.int64), 50_000_000)
    age = nprng.exponential(400.0, count).astype(np.int64)
    media = np.where(nprng.random(count) < 0.2, nprng.integers(1, 5, count), 0)
    offsets = np.sort(nprng.uniform(0, DAYS * 86400 - 1, count))

    items = Items([], [], offsets)
    for i in range(count):
        surface = rng.choice(benchlib.SURFACES)
        language = rng.choice(benchlib.LANGUAGES)
        source = "messaging" if surface == "dm" else "marketplace" if surface == "listing" else "app"
        if surface == "story" and rng.random() < 0.4:
            source = "live"
        words = rng.choices(WORDS[language], k=rng.randint(6, 50))
        roll = rng.random()
        if roll < 0.04:
            words.insert(rng.randrange(len(words)), rng.choice(PHRASES))
        elif roll < 0.14:
            words.append(f"https://example.com/p/{i:x}")
        metadata: dict[str, Any] = {
            "followers": int(followers[i]),
            "client": rng.choice(["ios", "android", "web"]),
            "verified": rng.random() < 0.02,
            "account_age_days": int(age[i]),
        }
        if rng.random() > 0.03:
            metadata["country"] = rng.choice(benchlib.COUNTRIES)
        if rng.random() < 0.005:
            metadata["newsworthy"] = True
        row = matrix[i]
        if partial[i]:
            scores = {c: float(v) for c, v in zip(CATEGORIES[:5], row[:5], strict=True)}
        else:
            scores = {c: float(v) for c, v in zip(CATEGORIES, row, strict=True)}
        kind, text = "user_report" if reported[i] else "content", " ".join(words)
        media_urls = json.dumps([f"https://cdn.example.com/m/{i}/{k}.jpg" for k in range(int(media[i]))])
        author = f"u{int(rng.paretovariate(1.2) * 1000)}"
        reasons = json.dumps(rng.sample(benchlib.REASONS, rng.randint(1, 3)) if reported[i] else [])
        more = (language, json.dumps(metadata, ensure_ascii=False), reasons, int(report_count[i]))
        items.fields.append((source, f"bench-{i:08d}", kind, text, media_urls, author, surface, *more))
        items.scores.append(scores)
    return items


@dataclass(frozen=True)
class Decided:
    """A final human decision on item ``index``."""

    index: int
    is_violation: bool
    policy: str
    action: str


# The policy people cite for an item, by its highest category.
CITED = "hateful-conduct harassment violent-threats self-harm adult-sexual child-safety violent-hate graphic-violence"
POLICY_OF = dict(zip(CATEGORIES, names(CITED), strict=True))


def decisions_generate(items: Items, count: int, *, seed: int) -> list[Decided]:
    """Final decisions on ``count`` distinct items: mostly violations where a score is high, rarely otherwise."""
    rng = random.Random(seed + 1)
    chosen = sorted(rng.sample(range(len(items.fields)), min(count, len(items.fields))))
    found = []
    for index in chosen:
        scores = items.scores[index]
        top = max(scores, key=scores.__getitem__)
        violation = rng.random() < (0.85 if scores[top] >= 0.5 else 0.08)
        policy = POLICY_OF[top] if scores[top] >= 0.5 else rng.choice(["spam", "fraud-scams", "harassment"])
        action = "remove" if violation else "no-action"
        found.append(Decided(index, violation, policy, action))
    return found


@contextmanager
def one_core() -> Iterator[int]:
    """Pin this thread to one CPU while the block runs."""
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def columns_from_rows(rows: Sequence[dict[str, Any]], names: set[str]) -> dict[str, Any]:
    """The rows as ``columns.item_columns`` shapes them: Categorical text, float numbers, Mixed metadata."""
    from routing.rules.language import Categorical, Mixed

    columns: dict[str, Any] = {}
    for name in sorted(names):
        values = [row.get(name) for row in rows]
        if name in ("kind", "source", "surface", "language", "text"):
            columns[name] = Categorical.from_values(values)
        elif name == "scored":
            columns[name] = np.array(values, dtype=bool)
        elif name.startswith("metadata."):
            columns[name] = Mixed.from_values(values)
        else:
            columns[name] = np.array([math.nan if v is None else v for v in values], dtype=float)
    return columns


@dataclass
class RowRates:
    rows: int
    cpu: int
    decide: float
    first_match: float
    interpreted: float
    interpreted_rows: int
    columns_build: float
    route_columns: float
    evaluate_columns: float
    matched: Counter[str] = field(default_factory=Counter)
    disagreements: int = 0


def measure_rows(program: Any, rows: list[dict[str, Any]], *, interpreted_rows: int, repeat: int) -> RowRates:
    from routing.rules.backtest import route_columns
    from routing.rules.columns import ItemColumns
    from routing.rules.engine import child_safety_flagged
    from routing.rules.language import compile_rules, evaluate_columns

    decide = program.decide
    first_match = program.compiled_terminal.first_match
    interpreted = program.decide_interpreted
    sample = rows[:interpreted_rows]

    def per_second(fn: Callable[[dict[str, Any]], Any], batch: list[dict[str, Any]], times: int) -> float:
        # A plain loop that keeps nothing, as live routing does (docs/performance.md, rules and backtests).
        def run() -> None:
            for r in batch:
                fn(r)

        return len(batch) / min(timed(run)[0] for _ in range(times))

    with one_core() as cpu:
        decide_rate = per_second(decide, rows, repeat)
        first_rate = per_second(first_match, rows, repeat)
        interp_rate = per_second(interpreted, sample, 1)
        # Fresh columns for each: the text column keeps its casefolded form once made.
        build_s, columns = timed(lambda: columns_from_rows(rows, set(program.names)))
        size = len(rows)
        data = ItemColumns(np.arange(size, dtype=np.int64), np.zeros(size, dtype=np.int32), columns)
        route_s, routed = timed(lambda: route_columns(program, data, queue_slugs={}, default_slug="general"))
        columns = columns_from_rows(rows, set(program.names))
        eval_s, masks = timed(lambda: [evaluate_columns(c, columns, size) for c in program.conditions])

    # One meaning three ways: the compiled program, the tree walk and the columns agree on every row.
    outcomes = [decide(r) for r in rows]
    interp_out = [interpreted(r) for r in sample]
    terminal = program.terminal
    compiled = [terminal[i] if i >= 0 else -1 for i in (first_match(r) for r in rows)]
    disagreements = sum(1 for a, b in zip(compiled[: len(sample)], interp_out, strict=True) if a != b)
    guard = np.array([child_safety_flagged(r) for r in rows], dtype=bool)
    expected = np.where(guard, -1, np.array(compiled, dtype=np.int32))
    disagreements += int((routed.rule_index != expected).sum())
    # Every condition's truth, compiled, against its mask from the columns.
    every = compile_rules(program.conditions).all_matches
    truth = np.zeros((len(program.conditions), size), dtype=bool)
    for j, r in enumerate(rows):
        truth[every(r), j] = True
    disagreements += sum(int((masks[k] != truth[k]).sum()) for k in range(len(program.conditions)))
    return RowRates(
        rows=size,
        cpu=cpu,
        decide=decide_rate,
        first_match=first_rate,
        interpreted=interp_rate,
        interpreted_rows=len(sample),
        columns_build=build_s,
        route_columns=size / route_s,
        evaluate_columns=size / eval_s,
        matched=Counter(o.matched for o in outcomes),
        disagreements=disagreements,
    )


def raw_copy_seconds(conninfo: str, *, start: datetime, end: datetime, names: set[str]) -> tuple[float, int, int]:
    """Seconds, rows and bytes of ``COPY (SELECT …) TO STDOUT`` of what the backtest loads, in one query."""
    from queues.models import ReviewItem
    from routing.models import ClassifierScore
    from routing.rules.features import raw_score_keys

    raw = raw_score_keys()
    item_fields = ["id", "received_at", "report_count", "kind", "source", "surface", "language"]
    item_fields += ["author_ref"] if names & {"author.prior_violations", "author.prior_reviews"} else []
    item_fields += ["text"] if "text" in names else []
    item_fields += ["metadata"] if any(n.startswith("metadata.") for n in names) else []
    select = [sql.SQL("i.{}").format(sql.Identifier(f)) for f in item_fields]
    select += [
        sql.SQL("(s.scores ->> {})::double precision").format(sql.Literal(raw[n])) for n in sorted(names) if n in raw
    ]
    query = sql.SQL(
        "COPY (SELECT {} FROM {} i LEFT JOIN {} s ON s.item_id = i.id AND s.backend = 'local' "
        "WHERE i.received_at >= {} AND i.received_at < {} AND i.state <> 'received' AND i.kind <> 'appeal' "
        "ORDER BY i.id) TO STDOUT"
    ).format(
        sql.SQL(", ").join(select),
        sql.Identifier(benchlib.table(ReviewItem)),
        sql.Identifier(benchlib.table(ClassifierScore)),
        sql.Literal(start),
        sql.Literal(end),
    )
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        t0 = time.perf_counter()
        size = lines = 0
        with cur.copy(query) as copy:
            for block in copy:
                size += len(block)
                lines += bytes(block).count(b"\n")
        return time.perf_counter() - t0, lines, size


def backtest_run(world: World, *, start: datetime, end: datetime) -> tuple[float, dict[str, Any]]:
    """Seconds and result of one ``backtest_compute`` of the draft against the baseline."""
    from routing.rules.backtest import backtest_compute
    from routing.rules.engine import program_for

    draft, baseline = program_for(world.draft), program_for(world.baseline)
    t0 = time.perf_counter()
    result = backtest_compute(draft, baseline, start=start, end=end)
    return time.perf_counter() - t0, result


ITEM_FIELDS = names(
    "source external_id kind text media_urls author_ref surface language metadata report_reasons report_count "
    "state queue_id priority tags required_reviews received_at triaged_at queued_at decided_at"
)
SCORE_FIELDS = names("item_id backend model model_version prompt_version scores detail created_at")
DECISION_FIELDS = names(
    "item_id reviewer_id queue_id policy_id action_id is_violation rationale claimed_at decided_at handle_time is_final"
)


def seed(conninfo: str, items: Items, decided: list[Decided], world: World, start: datetime) -> list[int]:
    """COPY the items, one local score row each and the decisions in; VACUUM ANALYZE as autovacuum would."""
    from queues.models import Decision, ReviewItem
    from routing.models import ClassifierScore

    queue = world.queues["general"].pk
    by_index = {d.index: d for d in decided}

    def at(i: int, seconds: float = 0) -> datetime:
        return start + timedelta(seconds=float(items.offset_seconds[i]) + seconds)

    def item_rows() -> Iterator[tuple[Any, ...]]:
        for i, fields in enumerate(items.fields):
            done = i in by_index
            state = ("decided" if done else "queued", queue, 0, "[]", 1)
            yield (*fields, *state, at(i), at(i, 2), at(i, 2), at(i, 3 * 3600) if done else None)

    with psycopg.connect(conninfo) as conn:
        benchlib.copy_rows(conn, ReviewItem, ITEM_FIELDS, item_rows())
        conn.commit()
        ids = list(ReviewItem.objects.order_by("pk").values_list("pk", flat=True))
        if len(ids) != len(items.fields) or ids[-1] - ids[0] + 1 != len(ids):
            raise SystemExit(f"COPY stored {len(ids)} items (expected {len(items.fields)}), or not in one id run")
        scores = (
            (item_id, "local", "local", "7", "", json.dumps(items.scores[i]), "{}", at(i, 1))
            for i, item_id in enumerate(ids)
        )
        benchlib.copy_rows(conn, ClassifierScore, SCORE_FIELDS, scores)
        decisions = (
            (
                *(ids[d.index], world.reviewer.pk, queue, world.policies[d.policy].pk, world.actions[d.action].pk),
                *(d.is_violation, "", at(d.index, 2 * 3600 + 59 * 60), at(d.index, 3 * 3600), timedelta(seconds=60)),
                True,
            )
            for d in decided
        )
        benchlib.copy_rows(conn, Decision, DECISION_FIELDS, decisions)
        conn.commit()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for model in (ReviewItem, ClassifierScore, Decision):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(benchlib.table(model))))
    return ids


def stored_rows(ids: list[int]) -> list[dict[str, Any]]:
    """``features.item_rows`` of stored items, as live triage builds them, in id order."""
    from queues.models import ReviewItem
    from routing.rules.features import item_rows

    out: list[dict[str, Any]] = []
    for i in range(0, len(ids), 2000):
        out += item_rows(list(ReviewItem.objects.filter(pk__in=ids[i : i + 2000]).order_by("pk"))).values()
    return out


def main() -> int:
    parser = benchlib.parser(__doc__, "bench_rules")
    parser.add_argument("--items", type=int, default=1_000_000, help="stored items to backtest over")
    parser.add_argument("--rows", type=int, default=200_000, help="stored items' rows for the rows/s figures")
    parser.add_argument("--interpreted-rows", type=int, help="rows for the tree walk (default: --rows)")
    parser.add_argument("--decisions", type=int, default=50_000, help="items with a final human decision")
    parser.add_argument("--repeat", type=int, default=3, help="backtest runs, and best of for compiled rows/s")
    parser.add_argument("--rate-target", type=float, default=100_000, help="compiled evaluations/s to pass")
    parser.add_argument("--backtest-target", type=float, default=10.0, help="backtest seconds to pass")
    args = parser.parse_args()
    args.rows = min(args.rows, args.items)
    print(f"generating {args.items:,} items and {args.decisions:,} decisions …", flush=True)
    t0 = time.perf_counter()
    items = items_generate(args.items, seed=1)
    decided = decisions_generate(items, args.decisions, seed=1)
    generate_s = time.perf_counter() - t0
    # DEBUG off (app_env's): no query log, a million rows must not be kept in connection.queries.
    with benchlib.scratch(args, CELERY_BROKER_URL="", SCORING_DEFAULT_CHAIN="local") as db:
        conninfo = db.conninfo
        from django.db import connection

        from routing.rules.engine import program_for

        world = world_create()
        draft = program_for(world.draft)
        print(f"seeding {args.items:,} items, their scores and {len(decided):,} decisions by COPY …", flush=True)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=DAYS)
        end = start + timedelta(days=DAYS)
        t0 = time.perf_counter()
        ids = seed(conninfo, items, decided, world, start)
        seed_s = time.perf_counter() - t0
        print(f"(a) {args.rows:,} stored items' rows: compiled, interpreted, columns …", flush=True)
        rows = stored_rows(ids[: args.rows])
        rates = measure_rows(draft, rows, interpreted_rows=args.interpreted_rows or args.rows, repeat=args.repeat)
        # The backtests run in a process holding no more than a worker would (docs/performance.md).
        del items, rows
        gc.collect()

        names_read = set(draft.names) | set(program_for(world.baseline).names)
        print("raw COPY (SELECT …) TO STDOUT of the same columns …", flush=True)
        copy_s, copied, copy_bytes = raw_copy_seconds(conninfo, start=start, end=end, names=names_read)
        connection.close()
        runs = []
        for n in range(args.repeat):
            print(f"backtest {n + 1}/{args.repeat} …", flush=True)
            runs.append(backtest_run(world, start=start, end=end))

        result = runs[0][1]
        terminal, tagging = len(draft.terminal), len(draft.tagging)
        r = benchlib.Report("Routing rules benchmark")
        r.stamp(conninfo)
        r.add(
            "rule set",
            f"{len(draft.specs)} intake rules ({terminal} deciding, {tagging} tag rules), reading "
            f"{len(draft.names)} fields; baseline: the active version, {len(BASELINE_RULES)} rules",
        )
        r.add(
            "(a) rows",
            f"{rates.rows:,} stored items' rows from features.item_rows; {rates.matched['default'] / rates.rows:.1%} "
            f"match no rule (every deciding rule checked); one thread pinned to CPU {rates.cpu}",
        )
        verdict = "met" if rates.decide >= args.rate_target else "MISSED"
        r.add(
            "**compiled `RuleProgram.decide`**",
            f"**{rates.decide:,.0f} rows/s** ({1e6 / rates.decide:.1f} µs/row: tags, guard, first match, Outcome; "
            f"target {args.rate_target:,.0f}: {verdict})",
        )
        r.add(
            "compiled `first_match` alone",
            f"{rates.first_match:,.0f} rows/s ({1e6 / rates.first_match:.1f} µs/row, {terminal} deciding rules)",
        )
        r.add(
            "interpreted `decide_interpreted`",
            f"{rates.interpreted:,.0f} rows/s ({1e6 / rates.interpreted:.1f} µs/row, over {rates.interpreted_rows:,} "
            f"rows); compiled first_match is {rates.first_match / rates.interpreted:.0f}x faster",
        )
        r.add(
            "vectorized `evaluate_columns`",
            f"{rates.evaluate_columns:,.0f} rows/s (all {len(draft.specs)} conditions as masks); `route_columns` "
            f"(first-match masks, caps) {rates.route_columns:,.0f} rows/s; building the columns from rows took "
            f"{rates.columns_build:.2f} s",
        )
        r.add("rows, three ways", f"{rates.disagreements} disagreements (compiled, interpreted, columns)")
        r.add(
            "(b) stored",
            f"{args.items:,} items over {DAYS} days, one local score row each, {len(decided):,} final decisions",
        )
        r.add("seeding (not in the figures)", f"{seed_s:.1f} s (COPY, VACUUM ANALYZE); generating {generate_s:.1f} s")
        for n, (total, run) in enumerate(runs, start=1):
            verdict = "met" if total < args.backtest_target else "MISSED"
            load, evaluate = run["seconds"]["load"], run["seconds"]["evaluate"]
            value = (
                f"{total:.2f} s: load {load:.2f} s, evaluate {evaluate:.2f} s, summaries "
                f"{total - load - evaluate:.2f} s ({run['items']:,} items, "
                f"{run['items'] / total:,.0f} items/s; target < {args.backtest_target:g} s: {verdict})"
            )
            r.add(
                f"**backtest_compute, run {n}**" if n == 1 else f"backtest_compute, run {n}",
                f"**{value}**" if n == 1 else value,
            )
        r.add(
            "raw PostgreSQL reference",
            f"COPY (SELECT the same columns, scores joined) TO STDOUT: {copy_s:.2f} s for {copied:,} rows, "
            f"{copy_bytes / 1e6:,.0f} MB",
        )
        destinations = sorted(result["destinations"].items(), key=lambda kv: -kv[1])[:6]
        r.add(
            "backtest outcome",
            f"{result['changed']:,} items change destination; draft: "
            + ", ".join(f"{k} {v:,}" for k, v in destinations),
        )
        outcome = [{k: v for k, v in run.items() if k != "seconds"} for _, run in runs]
        stable = all(o == outcome[0] for o in outcome)
        ok = rates.disagreements == 0 and result["items"] == args.items and stable
        failure = f"{rates.disagreements} disagreements, {result['items']:,} items, runs equal {stable}"
        return r.finish(RESULT, write=not args.no_write, ok=ok, failure=failure)


if __name__ == "__main__":
    sys.exit(main())
