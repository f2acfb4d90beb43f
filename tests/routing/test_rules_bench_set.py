"""The rule sets the benchmarks route with (tests/support/rule_world.py): every rule is one the editor accepts, and
the compiled program, the tree walk and the vectorized columns agree on the 50-rule draft, so what bench/rules.py
times three ways is one meaning."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.demo_world import POLICIES
from ops_platform.core.models import ClassifierCategory
from routing.models import RuleSetStatus
from routing.rules.engine import ITEM_FIELDS, program_for
from routing.rules.language import (
    Categorical,
    Type,
    Vocabulary,
    compile_rules,
    evaluate_columns,
    interpret_rules,
    parse,
    score_key,
)
from tests.support import rule_world

# What rules may read, as vocabulary_for() builds it from the demo world's policies, without the database.
SCORES = {score_key(c) for c in ClassifierCategory.values} | {score_key(f"policy:{p.slug}") for p in POLICIES}
VOCABULARY = Vocabulary(fields={name: kind for name, (kind, _) in ITEM_FIELDS.items()}, scores=frozenset(SCORES))
DRAFT = [parse(rule.condition, VOCABULARY) for rule in rule_world.DRAFT_RULES]
COMPILED = compile_rules(DRAFT)

scores = st.one_of(st.just(math.nan), st.sampled_from([0.0, 0.15, 0.3, 0.5, 0.6, 0.8, 0.9, 0.97, 1.0]))
words = st.sampled_from(["", "app", "live", "marketplace", "dm", "comment", "post", "story", "en", "pt-BR", "de", "ja"])
phrases = st.sampled_from(["", "hello", "kill yourself", "DM me on telegram", "double your money https://x.test"])


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    """An item as the draft's rules see it; any field may be absent."""
    candidates: dict[str, st.SearchStrategy[Any]] = {
        "kind": st.sampled_from(["content", "user_report"]),
        "source": words,
        "surface": words,
        "language": words,
        "text": phrases,
        "report_count": st.sampled_from([0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 25.0]),
        "scored": st.booleans(),
        "author.prior_violations": st.sampled_from([0.0, 1.0, 2.0, 3.0, 5.0]),
        "metadata.verified": st.one_of(st.booleans(), st.none()),
        "metadata.newsworthy": st.booleans(),
        "metadata.followers": st.sampled_from([0, 99_999, 100_000, 500_000]),
        "metadata.account_age_days": st.sampled_from([0, 1, 6, 29, 400]),
        "metadata.country": st.sampled_from(["DE", "US", "FR", "AT"]),
        **{f"score.{key}": scores for key in sorted(SCORES)},
    }
    present = draw(st.sets(st.sampled_from(sorted(candidates))))
    return {key: draw(candidates[key]) for key in sorted(present)}


def columns_from(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Backtest-style columns holding exactly what ``rows`` hold (a key absent from a row is missing)."""
    columns: dict[str, Any] = {}
    for key in sorted(set().union(*rows)):
        kind = (
            None
            if key.startswith("metadata.")
            else VOCABULARY.lookup(key.split(".", 1) if key.startswith("score.") else [key])
        )
        assert not isinstance(kind, str), kind
        if kind is None:
            columns[key] = np.array([r.get(key) for r in rows], dtype=object)
        elif kind[1] == Type.NUMBER:
            columns[key] = np.array([r.get(key, math.nan) for r in rows], dtype=float)
        elif kind[1] == Type.STRING:
            columns[key] = Categorical.from_values([r.get(key, "") for r in rows])
        else:
            columns[key] = np.array([r.get(key, False) for r in rows], dtype=bool)
    return columns


@pytest.mark.django_db
def test_every_rule_of_the_benchmark_sets_is_one_the_editor_accepts() -> None:
    world = rule_world.world_create()  # each rule goes through the editor's validation first

    draft, baseline = program_for(world.draft), program_for(world.baseline)

    assert (len(draft.specs), len(draft.tagging), len(baseline.specs)) == (50, 8, len(rule_world.BASELINE_RULES))
    assert world.baseline.status == RuleSetStatus.ACTIVE
    assert [spec.name for spec in draft.specs] == [rule.name for rule in rule_world.DRAFT_RULES]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), min_size=1, max_size=8))
def test_compiled_interpreted_and_vectorized_agree_on_the_benchmark_draft(batch: list[dict[str, Any]]) -> None:
    columns = columns_from(batch)
    masks = [evaluate_columns(node, columns, len(batch)) for node in DRAFT]
    for position, row in enumerate(batch):
        by_columns = [i for i, mask in enumerate(masks) if mask[position]]
        assert COMPILED.all_matches(row) == by_columns, row
        assert COMPILED.first_match(row) == interpret_rules(DRAFT, row) == (by_columns or [-1])[0], row
