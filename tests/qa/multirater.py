"""A seeded multi-rater data set: units rated by 3-9 raters each (some by one only), labels drawn around a
true label so there are agreements, disagreements and ties."""

from __future__ import annotations

import numpy as np

LABELS = ("none", "hate", "spam")


def multirater_units(
    *, units: int, raters: int, seed: int, sizes: tuple[int, ...] = (1, 3, 4, 5, 6, 7, 8, 9)
) -> list[list[tuple[int, str]]]:
    """Per unit, (rater index, label) pairs from distinct raters; the unit's size is drawn from ``sizes``."""
    rng = np.random.default_rng(seed)
    out: list[list[tuple[int, str]]] = []
    for _ in range(units):
        n = int(rng.choice(sizes))
        truth = int(rng.integers(len(LABELS)))
        who = rng.choice(raters, size=n, replace=False)
        labels = [truth if rng.random() < 0.65 else int(rng.integers(len(LABELS))) for _ in range(n)]
        out.append([(int(r), LABELS[c]) for r, c in zip(who, labels, strict=True)])
    return out


def as_matrix(units: list[list[tuple[int, str]]], raters: int) -> np.ndarray:
    """Raters x units, label codes, NaN where a rater did not rate: the ``krippendorff`` package's input."""
    matrix = np.full((raters, len(units)), np.nan)
    for j, ratings in enumerate(units):
        for r, label in ratings:
            matrix[r, j] = LABELS.index(label)
    return matrix


def count_table(units: list[list[tuple[int, str]]]) -> np.ndarray:
    """Units x categories counts: statsmodels' ``fleiss_kappa`` input."""
    return np.array([[sum(1 for _, x in ratings if x == label) for label in LABELS] for ratings in units], float)


def fleiss_by_hand(table: np.ndarray) -> float:
    """Fleiss' kappa with each unit's own number of ratings (equals statsmodels' when they are all equal)."""
    n = table.sum(axis=1)
    p_unit = (table * (table - 1)).sum(axis=1) / (n * (n - 1))
    p = table.sum(axis=0) / table.sum()
    return float((p_unit.mean() - (p**2).sum()) / (1 - (p**2).sum()))
