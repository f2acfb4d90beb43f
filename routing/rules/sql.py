"""Raw SQL of the backtest loader: the period's items read from PostgreSQL as one array aggregate per field.

Numpy reads each aggregate as it is, so no Python object is made per value: text as one string cut at known
lengths; short strings (kind, surface, a metadata value that is no number) and authors as 64-bit hashes, named by
one item per distinct hash or matched to the authors' history; scores and text on a second connection at the same
time. :func:`arrays_supported` says whether the database can do this; :func:`columns_load` reads the columns.
:mod:`routing.rules.columns` calls both and falls back to the ORM elsewhere (SQLite: the embedded mode); the two
loaders give equal columns (tests/routing/test_rules_columns.py).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any, TypeVar

import numpy as np
import psycopg
import psycopg.errors
from django.db import connection, connections, transaction
from django.db.models import Count, F, IntegerField, Q, QuerySet, Value
from psycopg import sql as pg_sql
from psycopg.adapt import Loader
from psycopg.pq import Format

from ops_platform.core.fields import ESCAPE, nul_decode, nul_decode_json
from queues.models import Decision, ItemState, ReviewItem
from routing.rules.column_types import Loaded, ScoreRows, Wanted
from routing.rules.features import ITEM_STRINGS
from routing.rules.language import Categorical, Mixed
from routing.scoring.models import ClassifierScore
from routing.scoring.selectors import backend_order

# Items per PostgreSQL query, and text per query (one aggregated value may not pass 1 GB).
POSTGRESQL_CHUNK = 1_000_000
POSTGRESQL_TEXT_BYTES = 256 * 1024 * 1024

T = TypeVar("T")
# The first integer a float cannot hold (Python's float() overflows there, PostgreSQL's ::float8 errors): a JSON
# number this large reads as infinity with its sign, as language.semantics.comparable reads it (only after the plain
# cast failed: see _Table.aggregate).
_FLOAT_END = 2**1024 - 2**970


def arrays_supported() -> bool:
    """Whether the default database can answer :func:`columns_load` (PostgreSQL's binary array aggregates)."""
    return connection.vendor == "postgresql"


def columns_load(
    *, items: QuerySet[ReviewItem], wanted: Wanted, keys: list[str] | None, progress: Any
) -> tuple[Loaded, ScoreRows]:
    """The ``items``' columns ``wanted`` asks for, in id order, and their score rows for ``keys`` (none when
    ``keys`` is None), as the ORM loader in :mod:`routing.rules.columns` gives them."""
    return _load_postgresql(items, wanted, keys, progress)


class _RawArray(Loader):
    """A binary array as the bytes PostgreSQL sent: :func:`_array` reads them with numpy."""

    format = Format.BINARY

    def load(self, data: Any) -> bytes:
        return bytes(data)


_ARRAY_TYPES = {"int4": "<i4", "int8": "<i8", "float8": "<f8"}


def _array(data: bytes | None, dtype: str) -> np.ndarray:
    """A one-dimensional binary array without NULLs: a header, then per element a length and the value."""
    if data is None:
        return np.zeros(0, dtype=dtype)
    dims, has_nulls = struct.unpack_from(">ii", data)
    if dims == 0:
        return np.zeros(0, dtype=dtype)
    if dims != 1 or has_nulls:
        raise ValueError("expected a one-dimensional array without NULLs")
    size = struct.unpack_from(">i", data, 12)[0]
    layout = np.dtype([("length", ">i4"), ("value", np.dtype(dtype).newbyteorder(">"))])
    return np.frombuffer(data, dtype=layout, count=size, offset=20)["value"].astype(dtype)


def _query(sql: str, params: Sequence[Any]) -> tuple[Any, ...]:
    """The one row of an aggregate query, its arrays as raw bytes."""
    connection.ensure_connection()
    # Django's cursors bind parameters client-side, which allows text results only.
    with psycopg.Cursor(connection.connection) as cursor:
        for name in _ARRAY_TYPES:
            cursor.adapters.register_loader(cursor.adapters.types[name].array_oid, _RawArray)
        cursor.execute(sql, params, binary=True)
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def _literal(value: str) -> str:
    """A string quoted into SQL that is run with parameters (so its % doubled)."""
    connection.ensure_connection()
    return pg_sql.Literal(value).as_string(connection.connection).replace("%", "%%")


def _where(items: QuerySet[ReviewItem]) -> tuple[str, list[Any]]:
    """The items' filter as the ORM writes it (it names the table, which the queries below use unaliased)."""
    compiler = items.query.get_compiler(connection=connection)
    where, params = compiler.compile(items.query.where)
    return where, list(params)


def _beside(work: Callable[[], T]) -> Callable[[], T]:
    """Start ``work`` on another thread with a connection of its own, so that PostgreSQL answers two
    queries at once (a backtest is bound by it); the function returned waits for the answer. Inside a
    transaction the work runs here instead: another connection would not see what it wrote."""
    if connection.in_atomic_block:
        done = work()
        return lambda: done
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backtest-columns")
    future = executor.submit(_on_own_connection, work)
    executor.shutdown(wait=False)
    return future.result


def _on_own_connection(work: Callable[[], T]) -> T:
    try:
        return work()
    finally:
        connections.close_all()  # this thread's


class _Arrays:
    """The select list of one aggregate query: arrays by name, each decoded by numpy."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, str, str]] = []  # name, SQL, element type ("text": one string)
        self.careful: dict[str, str] = {}  # name -> SQL that cannot fail where the plain one may (slower)

    def add(self, name: str, sql: str, kind: str, careful: str | None = None) -> None:
        self.parts.append((name, sql, kind))
        if careful is not None:
            self.careful[name] = careful

    @property
    def sql(self) -> str:
        return ", ".join(sql for _, sql, _ in self.parts)

    @property
    def careful_sql(self) -> str:
        return ", ".join(self.careful.get(name, sql) for name, sql, _ in self.parts)

    def decode(self, row: Sequence[Any]) -> dict[str, Any]:
        return {
            name: (value or "") if kind == "text" else _array(value, _ARRAY_TYPES[kind])
            for (name, _, kind), value in zip(self.parts, row, strict=True)
        }


class _Table:
    """The items table as the ORM's filter names it, and the id ranges the period's items fall into."""

    def __init__(self, items: QuerySet[ReviewItem], wanted: Wanted):
        self.name = connection.ops.quote_name(ReviewItem._meta.db_table)
        self.where, self.params = _where(items)
        text_bytes = f"coalesce(sum(octet_length({self.col('text')})), 0)" if wanted.text else "0"
        low, high, self.total, text_size = _query(
            f"SELECT min({self.col('id')}), max({self.col('id')}), count(*), {text_bytes} "  # noqa: S608 - names from _meta
            f"FROM {self.name} WHERE {self.where}",
            self.params,
        )
        # Id ranges of at most POSTGRESQL_CHUNK items and POSTGRESQL_TEXT_BYTES of text (one value may not pass
        # 1 GB), as far as ids are spread evenly.
        pieces = max(math.ceil(self.total / POSTGRESQL_CHUNK), math.ceil(text_size / POSTGRESQL_TEXT_BYTES), 1)
        step = math.ceil(((high or 0) - (low or 0) + 1) / pieces)
        self.ranges = (
            [(first, min(first + step - 1, high)) for first in range(low, high + 1, step)] if self.total else []
        )

    def col(self, name: str) -> str:
        return f"{self.name}.{connection.ops.quote_name(name)}"

    def aggregate(self, arrays: _Arrays, first: int, last: int, joins: str = "") -> dict[str, Any]:
        def run(select: str) -> tuple[Any, ...]:
            return _query(
                f"SELECT {select} FROM {self.name}{joins} "  # noqa: S608 - names from _meta, values as parameters
                f"WHERE {self.where} AND {self.col('id')} BETWEEN %s AND %s",
                [*self.params, first, last],
            )

        if not arrays.careful:
            return arrays.decode(run(arrays.sql))
        # The plain SQL first: the careful form costs every value, and the values it guards against are rare. Inside
        # a transaction a savepoint keeps it usable for the second try.
        try:
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                return arrays.decode(run(arrays.sql))
        except psycopg.errors.NumericValueOutOfRange:
            return arrays.decode(run(arrays.careful_sql))


def _load_postgresql(
    items: QuerySet[ReviewItem], wanted: Wanted, keys: list[str] | None, progress: Any
) -> tuple[Loaded, ScoreRows]:
    table = _Table(items, wanted)
    if not table.total:
        return _empty(wanted), []
    # Text and scores on a second connection while this one reads everything else.
    later = _beside(
        lambda: (
            _score_rows_postgresql(keys, table.ranges) if keys is not None else [],
            _texts_postgresql(table) if wanted.text else None,
        )
    )
    col = table.col
    arrays = _Arrays()
    arrays.add("id", f"array_agg({col('id')})", "int8")
    arrays.add("day", f"array_agg(({col('received_at')} AT TIME ZONE 'UTC')::date - DATE '0001-01-01' + 1)", "int4")
    arrays.add("report_count", f"array_agg({col('report_count')})", "int4")
    strings = ", ".join(col(name) for name in ITEM_STRINGS)
    arrays.add("strings", f"array_agg(hash_record_extended(ROW({strings}), 0))", "int8")
    if wanted.history:
        arrays.add("author", f"array_agg(hash_record_extended(ROW({col('source')}, {col('author_ref')}), 0))", "int8")
    if wanted.media:  # intake stores a list
        media = col("media_urls")
        arrays.add(
            "media",
            f"array_agg(CASE jsonb_typeof({media}) WHEN 'array' THEN jsonb_array_length({media}) ELSE 0 END)",
            "int4",
        )
    joins = ""
    if wanted.metadata:
        # Each key read once per item: a number as itself, anything else (text, true, null) by its JSON's hash.
        values = ", ".join(f"{col('metadata')} -> {_literal(key)} AS m{k}" for k, key in enumerate(wanted.metadata))
        joins = f" CROSS JOIN LATERAL (SELECT {values} OFFSET 0) AS metadata_values"
        for k in range(len(wanted.metadata)):
            value = f"metadata_values.m{k}"
            arrays.add(
                f"number{k}",
                f"array_agg(CASE jsonb_typeof({value}) WHEN 'number' THEN {value}::float8 ELSE 'NaN' END)",
                "float8",
                careful=f"array_agg(CASE jsonb_typeof({value}) WHEN 'number' THEN "
                f"CASE WHEN abs({value}::numeric) < {_FLOAT_END} THEN {value}::float8 "
                f"ELSE sign({value}::numeric)::float8 * 'Infinity'::float8 END ELSE 'NaN' END)",
            )
            arrays.add(
                f"other{k}",
                f"array_agg(CASE jsonb_typeof({value}) WHEN 'number' THEN 0 "
                f"ELSE coalesce(hashtextextended({value}::text, 0), 0) END)",
                "int8",
            )
    parts: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in arrays.parts}
    for first, last in table.ranges:
        for name, array in table.aggregate(arrays, first, last, joins).items():
            parts[name].append(array)
        if progress:
            progress(sum(map(len, parts["id"])), table.total)
    found = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    if not np.all(found["id"][1:] > found["id"][:-1]):
        order = np.argsort(found["id"], kind="stable")
        found = {name: array[order] for name, array in found.items()}
    ids = found["id"]

    # Hashes -> what they stand for, as one item per distinct hash says it.
    groups: list[tuple[list[str], np.ndarray, np.ndarray | None]] = [
        ([col(name) for name in ITEM_STRINGS], found["strings"], None)
    ]
    groups += [
        ([f"{col('metadata')} -> {_literal(key)}"], found[f"other{k}"], found[f"other{k}"] != 0)
        for k, key in enumerate(wanted.metadata)
    ]
    (string_codes, combinations), *others = _resolve(table, ids, groups)
    loaded = Loaded(
        ids=ids,
        day=found["day"].astype(np.int32),
        report_count=found["report_count"].astype(float),
        strings={name: _recode(string_codes, [c[k] for c in combinations]) for k, name in enumerate(ITEM_STRINGS)},
    )
    if wanted.media:
        loaded.media = found["media"].astype(float)
    if wanted.history:
        loaded.history = _history_postgresql(found["author"])
    if wanted.metadata:
        loaded.metadata = {
            key: _mixed(
                found[f"number{k}"], codes, [nul_decode_json(json.loads(v)) if v is not None else None for (v,) in said]
            )
            for k, (key, (codes, said)) in enumerate(zip(wanted.metadata, others, strict=True))
        }
    score_rows, texts = later()
    if texts is not None:
        loaded.text = _align_texts(table, ids, *texts)
    return loaded, score_rows


def _recode(codes: np.ndarray, values: list[str]) -> Categorical:
    """Codes into possibly repeated values as a Categorical of distinct ones."""
    distinct = Categorical.from_values(values)
    return Categorical(np.append(distinct.codes, -1)[codes].astype(np.int32), distinct.values)


def _mixed(numbers: np.ndarray, codes: np.ndarray, values: list[Any]) -> Mixed:
    """A metadata column from its numbers and, for the rest, codes into the distinct other values."""
    flag_of = np.array([int(v) if v.__class__ is bool else -1 for v in values] + [-1], dtype=np.int8)
    texts = [v for v in values if v.__class__ is str]
    index = {v: i for i, v in enumerate(texts)}
    text_of = np.array([index[v] if v.__class__ is str else -1 for v in values] + [-1], dtype=np.int32)
    return Mixed(numbers=numbers, strings=Categorical(text_of[codes], texts), flags=flag_of[codes])


def _resolve(
    table: _Table, ids: np.ndarray, groups: list[tuple[list[str], np.ndarray, np.ndarray | None]]
) -> list[tuple[np.ndarray, list[tuple[Any, ...]]]]:
    """For each group (SQL of what was hashed, the hashes, which items count), codes per item (-1: not
    counted) into what the distinct hashes stand for, read from one item each: a query of a few rows.

    Two different values with one 64-bit hash would be taken for one; among the hundreds of kinds, surfaces
    or countries a column holds, that is not a chance worth a second hash.
    """
    plans = []
    speakers: set[int] = set()
    for _, hashes, counted in groups:
        where = np.ones(len(ids), dtype=bool) if counted is None else counted
        codes = np.full(len(ids), -1, dtype=np.int32)
        _, first, inverse = np.unique(hashes[where], return_index=True, return_inverse=True)
        codes[where] = inverse
        said_by = ids[where][first].tolist()
        speakers.update(said_by)
        plans.append((codes, said_by))
    values: dict[int, tuple[Any, ...]] = {}
    if speakers:
        select = ", ".join(expression for expressions, _, _ in groups for expression in expressions)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {table.col('id')}, {select} FROM {table.name} WHERE {table.col('id')} = ANY(%s)",  # noqa: S608 - names from _meta
                [sorted(speakers)],
            )
            values = {row[0]: row[1:] for row in cursor.fetchall()}
    resolved = []
    position = 0
    for (expressions, _, _), (codes, said_by) in zip(groups, plans, strict=True):
        width = len(expressions)
        resolved.append((codes, [values[i][position : position + width] for i in said_by]))
        position += width
    return resolved


def _history_postgresql(authors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prior violations and reviews per item, by the hash of its (source, author_ref): what
    ``features.author_history`` counts, aggregated in one query and matched in numpy."""
    decided = (
        Decision.objects.filter(is_final=True, superseded_by__isnull=True, item__is_golden=False)
        .values(history_source=F("item__source"), history_author=F("item__author_ref"))
        .annotate(violations=Count("pk", filter=Q(is_violation=True)), reviews=Count("pk"))
        .order_by()
    )
    auto = (
        ReviewItem.objects.filter(state=ItemState.AUTO_ACTIONED, is_golden=False)
        .values(history_source=F("source"), history_author=F("author_ref"))
        .annotate(violations=Count("pk"), reviews=Value(0, output_field=IntegerField()))
        .order_by()
    )
    decided_sql, decided_params = decided.query.sql_with_params()
    auto_sql, auto_params = auto.query.sql_with_params()
    author = "hash_record_extended(ROW(history_source, history_author), 0)"
    row = _query(
        f"SELECT array_agg(author), array_agg(violations), array_agg(reviews) FROM (SELECT {author} AS author, "  # noqa: S608 - the ORM's SQL
        "sum(violations)::int8 AS violations, sum(reviews)::int8 AS reviews "
        f"FROM ({decided_sql} UNION ALL {auto_sql}) AS per_kind WHERE history_author <> '' GROUP BY 1) AS history",
        [*decided_params, *auto_params],
    )
    known, violations, reviews = _array(row[0], "<i8"), _array(row[1], "<i8"), _array(row[2], "<i8")
    order = np.argsort(known)
    known, violations, reviews = known[order], np.append(violations[order], 0), np.append(reviews[order], 0)
    distinct, inverse = np.unique(authors, return_inverse=True)
    where = np.searchsorted(known, distinct)
    found = where < len(known)
    found[found] = known[where[found]] == distinct[found]
    where = np.where(found, where, len(known))[inverse]  # an author with no history: the appended zeros
    return violations[where].astype(float), reviews[where].astype(float)


def _texts_postgresql(table: _Table) -> tuple[np.ndarray, list[str]]:
    """Every item's id and text: each range's texts as one string, cut at the lengths PostgreSQL counted."""
    arrays = _Arrays()
    arrays.add("id", f"array_agg({table.col('id')})", "int8")
    arrays.add("text", f"string_agg({table.col('text')}, '')", "text")
    arrays.add("length", f"array_agg(char_length({table.col('text')}))", "int4")
    ids: list[np.ndarray] = []
    values: list[str] = []
    for first, last in table.ranges:
        found = table.aggregate(arrays, first, last)
        ends = np.cumsum(found["length"]).tolist()
        text = found["text"]
        pieces = [text[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        # Cut where PostgreSQL counted (the stored, escaped form), then decoded as the model field would.
        values += [nul_decode(piece) for piece in pieces] if ESCAPE in text else pieces
        ids.append(found["id"])
    return np.concatenate(ids), values


def _align_texts(table: _Table, ids: np.ndarray, text_ids: np.ndarray, values: list[str]) -> Categorical:
    """The texts in the order of ``ids``. They came from another query, which may have seen a few items
    more or fewer (intake and triage go on): those missing are read again."""
    order = np.argsort(text_ids, kind="stable")
    known = text_ids[order]
    where = np.minimum(np.searchsorted(known, ids), max(len(known) - 1, 0))
    found = (known[where] == ids) if len(known) else np.zeros(len(ids), bool)
    codes = np.where(found, order[where] if len(known) else 0, -1).astype(np.int32)
    missing = ids[~found].tolist()
    if missing:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {table.col('id')}, {table.col('text')} FROM {table.name} WHERE {table.col('id')} = ANY(%s)",  # noqa: S608 - names from _meta
                [missing],
            )
            again = dict(cursor.fetchall())
        codes[~found] = np.arange(len(values), len(values) + len(missing), dtype=np.int32)
        values = [*values, *(again.get(i, "") for i in missing)]
    return Categorical(codes, values)


def _score_rows_postgresql(keys: list[str], ranges: list[tuple[int, int]]) -> ScoreRows:
    table = connection.ops.quote_name(ClassifierScore._meta.db_table)
    values = "".join(f", array_agg(coalesce((scores ->> {_literal(key)})::float8, 'NaN'))" for key in keys)
    rows: ScoreRows = []
    for first, last in ranges:
        for backend in backend_order():
            row = _query(
                f"SELECT array_agg(item_id), array_agg(extract(epoch FROM created_at)::float8){values} "  # noqa: S608 - names from _meta, keys as literals
                f"FROM {table} WHERE backend = %s AND item_id BETWEEN %s AND %s",
                [backend, first, last],
            )
            item_ids = _array(row[0], "<i8")
            if len(item_ids):
                order = np.argsort(_array(row[1], "<f8"), kind="stable")  # the order written, as the ORM's
                matrix = np.array([_array(data, "<f8")[order] for data in row[2:]]).reshape(len(keys), len(item_ids))
                rows.append((item_ids[order], matrix))
    return rows


def _empty(wanted: Wanted) -> Loaded:
    def nothing() -> Categorical:
        return Categorical(np.zeros(0, np.int32), [])

    return Loaded(
        ids=np.zeros(0, np.int64),
        day=np.zeros(0, np.int32),
        report_count=np.zeros(0),
        strings={name: nothing() for name in ITEM_STRINGS},
        text=nothing() if wanted.text else None,
        media=np.zeros(0) if wanted.media else None,
        history=(np.zeros(0), np.zeros(0)) if wanted.history else None,
        metadata={key: Mixed.missing(0) for key in wanted.metadata} if wanted.metadata else None,
    )
