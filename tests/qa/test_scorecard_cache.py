"""The scorecards' per-slice statistics are cached by content (issue 19: ~0.5 s of bootstrap intervals a page at a
million decisions): a cached slice equals ``stats_of`` of the same rows, and any change to a slice's rows (a refresh,
a sample closed today) computes it again while the other slices are read back."""

from __future__ import annotations

from typing import Any

import pytest

from qa import selectors
from qa.selectors import stats_cached, stats_of


def group(**changes: Any) -> dict[str, Any]:
    base = {
        "original_violation": True,
        "original_policy_id": 1,
        "review_violation": True,
        "review_policy_id": 1,
        "adjudicated": False,
        "error_type": "",
        "samples": 30,
        "weight": 60.0,
        "weight_sq": 120.0,
        "loss": 0.0,
    }
    return {**base, **changes}


@pytest.fixture
def inputs() -> dict[int, tuple[list[dict[str, Any]], int, int]]:
    return {
        1: ([group(), group(review_violation=False, error_type="false_positive", samples=4, loss=8.0)], 10, 9),
        2: ([group(samples=3, weight=3.0, weight_sq=3.0)], 0, 0),
    }


def test_cached_stats_equal_a_direct_computation_and_only_changed_slices_are_computed_again(
    inputs: dict[int, tuple[list[dict[str, Any]], int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    slugs = {1: "hate"}
    first = stats_cached(inputs, n_resamples=50, slugs=slugs)
    for pk, (groups, golden, right) in inputs.items():
        assert first[pk] == stats_of(groups, golden, right, n_resamples=50, slugs=slugs)
    computed: list[int] = []
    real = selectors.stats_of

    def counting(groups: Any, golden: int, right: int, **kw: Any) -> Any:
        computed.append(golden)
        return real(groups, golden, right, **kw)

    monkeypatch.setattr(selectors, "stats_of", counting)
    # The same rows in another order (as the database may return them): read back, nothing computed.
    shuffled = {pk: (list(reversed(groups)), golden, right) for pk, (groups, golden, right) in inputs.items()}
    assert stats_cached(shuffled, n_resamples=50, slugs=slugs) == first
    assert computed == []
    # Reviewer 1 got one more golden result: only their figures are computed again, and they change.
    changed = {**inputs, 1: (inputs[1][0], 11, 10)}
    again = stats_cached(changed, n_resamples=50, slugs=slugs)
    assert computed == [11]
    assert again[2] == first[2]
    assert again[1].golden_accuracy != first[1].golden_accuracy
    # A renamed policy names the labels differently: computed again too.
    stats_cached(inputs, n_resamples=50, slugs={1: "hate-speech"})
    assert sorted(computed) == [0, 10, 11]
