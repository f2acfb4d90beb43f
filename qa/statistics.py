"""Statistics for the QA program: agreement, accuracy, weighted estimates from samples, quality scores.

Pure functions over numbers; selectors group decisions per queue, policy, vendor, reviewer or period
and call these once per group. Every statistic comes back as an ``Estimate`` (value, interval, n).

- Agreement: ``percent_agreement``, ``cohen_kappa`` (two raters, scikit-learn), ``krippendorff_alpha``
  (any number of raters, missing ratings allowed, the ``krippendorff`` package), ``fleiss_kappa`` (many
  raters per unit; statsmodels' formula, with each unit's own number of ratings when they differ) and
  ``agreement_rate`` (share of units on which one rater matched a reference, e.g. the final outcome). Their
  intervals are seeded percentile bootstraps over units (scipy), so the same data always gives the same
  interval.
- Accuracy against adjudicated or golden answers: ``accuracy``, a Wilson interval (statsmodels).
- Sampled decisions carry their inclusion probability pi; each counts 1/pi decisions of the population.
  ``weighted_proportion`` is the Hajek estimator sum(y/pi) / sum(1/pi), i.e. the Horvitz-Thompson
  total (``horvitz_thompson_total``) over the Horvitz-Thompson population size. Its interval is a
  Wilson interval at Kish's effective sample size (sum w)^2 / sum w^2: with equal weights it is exactly
  ``accuracy``'s interval, and unlike a normal interval it does not collapse to [0, 0] when a sample
  happens to hold no errors. It ignores the precision stratification buys, so it errs on the wide side.
- ``sample_size`` is n = z^2 p (1 - p) / e^2, rounded up, optionally with the finite-population correction
  n / (1 + (n - 1) / N).

Severity-weighted quality score, per reviewer or per vendor, over QA outcomes i with weight
w_i = 1 / pi_i and severity s_i (0 when QA agreed with the decision, else the error's severity weight,
0 < s_i <= S where S is the top of the severity scale)::

    quality = 1 - sum(w_i * s_i) / (S * sum(w_i))

It lies in [0, 1]: 1 means no errors, 0 means every decision was an error of the top severity. It is
1 minus the Hajek mean of s_i / S, so its interval is ``weighted_proportion``'s; the Wilson interval is
conservative for a mean of values in [0, 1] (their variance is at most mu (1 - mu)).

Degenerate agreement: when every rating is the same label, observed and chance agreement are both 1 and
kappa and alpha are 0/0. We report 1.0 (the raters never disagreed) rather than NaN, so dashboards and
bootstrap resamples stay numeric; ``Estimate.degenerate`` says so. Data with nothing to compare (no units,
no unit rated twice) raises ``ApplicationError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Literal

import krippendorff
import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.proportion import proportion_confint

from ops_platform.core.errors import ApplicationError

Level = Literal["nominal", "ordinal", "interval", "ratio"]
FloatArray = npt.NDArray[np.float64]

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval; ``n`` is the number of units, decisions or sampled outcomes."""

    value: float
    low: float
    high: float
    n: int
    degenerate: bool = False

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] n={self.n}"


def bootstrap_ci(
    statistic: Callable[[npt.NDArray[np.intp]], float],
    n_units: int,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(unit_indices)``, resampling units with replacement.

    Resampling indices rather than rows lets a unit be a column of a rating matrix or a pair of labels.
    ``n_resamples=0`` skips the bootstrap and gives a NaN interval: for callers that show point estimates only
    (a weekly scorecard over many vendors), where resampling would be most of the cost.
    """
    if n_resamples == 0:
        return math.nan, math.nan
    if n_units < 2:
        raise ApplicationError("An interval needs at least two units.", field="units")
    _check_confidence(confidence)
    result = scipy_stats.bootstrap(
        (np.arange(n_units),),
        lambda indices: statistic(indices.astype(np.intp)),
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=False,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def rating_matrix(
    ratings: Iterable[tuple[Hashable, Hashable, Hashable]], *, labels: Sequence[Hashable] | None = None
) -> tuple[FloatArray, list[Hashable]]:
    """Raters x units matrix of label codes from (unit, rater, label) triples, NaN where a rater did not rate.

    Pass ``labels`` in their order for ordinal data; otherwise labels are coded in order of first appearance.
    """
    rows = list(ratings)
    units = list(dict.fromkeys(unit for unit, _, _ in rows))
    raters = list(dict.fromkeys(rater for _, rater, _ in rows))
    codes = list(labels) if labels is not None else list(dict.fromkeys(label for _, _, label in rows))
    unit_index = {unit: i for i, unit in enumerate(units)}
    rater_index = {rater: i for i, rater in enumerate(raters)}
    code_of = {label: float(i) for i, label in enumerate(codes)}
    matrix = np.full((len(raters), len(units)), np.nan)
    for unit, rater, label in rows:
        if label not in code_of:
            raise ApplicationError(f"Label {label!r} is not one of the given labels.", field="labels")
        matrix[rater_index[rater], unit_index[unit]] = code_of[label]
    return matrix, codes


def percent_agreement(
    matrix: npt.ArrayLike,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Estimate:
    """Mean over units rated at least twice of the share of rater pairs that gave the same label.

    With two raters this is the share of units both rated on which they agreed.
    """
    values = _pairable_units(matrix)
    per_unit = np.array([_unit_pair_agreement(values[:, j]) for j in range(values.shape[1])])

    def statistic(indices: npt.NDArray[np.intp]) -> float:
        return float(per_unit[indices].mean())

    low, high = bootstrap_ci(statistic, len(per_unit), n_resamples=n_resamples, confidence=confidence, seed=seed)
    return Estimate(float(per_unit.mean()), low, high, len(per_unit))


def cohen_kappa(
    a: Sequence[Hashable],
    b: Sequence[Hashable],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Estimate:
    """Cohen's kappa between two raters' labels for the same units (scikit-learn); 1.0 if all one label."""
    if len(a) != len(b):
        raise ApplicationError("Both raters must label the same units.", field="b")
    if not a:
        raise ApplicationError("Kappa needs at least one rated unit.", field="a")
    # scikit-learn cannot classify object arrays of ints or bools ("unknown is not supported"), so code
    # every label as an integer first: kappa depends only on which labels are equal.
    codes: dict[Hashable, int] = {}
    first = np.array([codes.setdefault(label, len(codes)) for label in a], dtype=np.intp)
    second = np.array([codes.setdefault(label, len(codes)) for label in b], dtype=np.intp)

    def statistic(indices: npt.NDArray[np.intp]) -> float:
        return _kappa(first[indices], second[indices])

    low, high = bootstrap_ci(statistic, len(first), n_resamples=n_resamples, confidence=confidence, seed=seed)
    value = _kappa(first, second)
    return Estimate(value, low, high, len(first), degenerate=len({*a, *b}) == 1)


def kappa_from_counts(pairs: Mapping[tuple[Hashable, Hashable], float]) -> float:
    """Cohen's kappa from a confusion table, {(first rater's label, second's): count}: the same value as
    ``cohen_kappa`` on the labels it counts (po - pe) / (1 - pe), without the labels themselves, so rollups
    that keep only counts per label pair can report it. 1.0 if all one label (module docstring)."""
    total = sum(pairs.values())
    if total <= 0:
        raise ApplicationError("Kappa needs at least one rated unit.", field="pairs")
    first: dict[Hashable, float] = {}
    second: dict[Hashable, float] = {}
    for (a, b), n in pairs.items():
        first[a] = first.get(a, 0.0) + n
        second[b] = second.get(b, 0.0) + n
    if len({*(k for k, n in first.items() if n), *(k for k, n in second.items() if n)}) == 1:
        return 1.0
    observed = sum(n for (a, b), n in pairs.items() if a == b) / total
    chance = sum(first[k] * second.get(k, 0.0) for k in first) / total**2
    return (observed - chance) / (1 - chance)


def krippendorff_alpha(
    matrix: npt.ArrayLike,
    *,
    level: Level = "nominal",
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Estimate:
    """Krippendorff's alpha of a raters x units matrix with NaN for missing ratings (``krippendorff`` package).

    Units rated fewer than twice carry no information about agreement, so they are dropped before
    resampling; ``n`` counts the units that remain.
    """
    values = _pairable_units(matrix)
    # Fix the value domain so that a resample missing some label still measures ordinal/interval distances
    # on the full scale.
    domain = np.unique(values[~np.isnan(values)])

    def statistic(indices: npt.NDArray[np.intp]) -> float:
        return _alpha(values[:, indices], domain, level)

    low, high = bootstrap_ci(statistic, values.shape[1], n_resamples=n_resamples, confidence=confidence, seed=seed)
    return Estimate(_alpha(values, domain, level), low, high, values.shape[1], degenerate=len(domain) == 1)


def fleiss_kappa(
    matrix: npt.ArrayLike,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Estimate:
    """Fleiss' kappa of a raters x units matrix with NaN where a rater did not rate (nominal labels).

    Over units rated at least twice: (mean P_i - sum p_j^2) / (1 - sum p_j^2), where P_i is the share of
    agreeing rating pairs in unit i (over its own n_i ratings) and p_j the share of all ratings in category
    j. With the same number of ratings per unit this is exactly statsmodels' ``fleiss_kappa``; which raters
    gave the ratings does not matter, only how many fell in each category.
    """
    values = _pairable_units(matrix)
    domain = np.unique(values[~np.isnan(values)])
    table = np.stack([np.sum(values == code, axis=0) for code in domain], axis=1).astype(np.float64)

    def statistic(indices: npt.NDArray[np.intp]) -> float:
        return _fleiss(table[indices])

    low, high = bootstrap_ci(statistic, table.shape[0], n_resamples=n_resamples, confidence=confidence, seed=seed)
    return Estimate(_fleiss(table), low, high, table.shape[0], degenerate=len(domain) == 1)


def agreement_rate(
    hits: Sequence[bool],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Estimate:
    """Share of units on which a rater matched the reference (one entry per unit), with a bootstrap interval
    over units like the other agreement figures."""
    if not hits:
        raise ApplicationError("Agreement needs at least one rated unit.", field="hits")
    per_unit = np.asarray(hits, dtype=np.float64)

    def statistic(indices: npt.NDArray[np.intp]) -> float:
        return float(per_unit[indices].mean())

    low, high = bootstrap_ci(statistic, len(per_unit), n_resamples=n_resamples, confidence=confidence, seed=seed)
    return Estimate(float(per_unit.mean()), low, high, len(per_unit))


def accuracy(correct: int, total: int, *, confidence: float = DEFAULT_CONFIDENCE) -> Estimate:
    """Share of decisions matching the adjudicated or golden answer, with a Wilson interval (statsmodels)."""
    if total <= 0:
        raise ApplicationError("Accuracy needs at least one checked decision.", field="total")
    if not 0 <= correct <= total:
        raise ApplicationError("Correct decisions must be between 0 and the total.", field="correct")
    _check_confidence(confidence)
    low, high = proportion_confint(correct, total, alpha=1 - confidence, method="wilson")
    return Estimate(correct / total, float(low), float(high), total)


def horvitz_thompson_total(values: Sequence[float], inclusion_probabilities: Sequence[float]) -> float:
    """Estimated population total of ``values`` (e.g. wrong decisions in a queue) from a sample: sum(y / pi)."""
    y, pi = _sample_arrays(values, inclusion_probabilities)
    return float(np.sum(y / pi))


def weighted_proportion(
    values: Sequence[float], inclusion_probabilities: Sequence[float], *, confidence: float = DEFAULT_CONFIDENCE
) -> Estimate:
    """Hajek estimate of a population proportion (or mean of values in [0, 1]) from a sample.

    ``values`` are 1 for an error and 0 otherwise (or any value in [0, 1]); the interval is a Wilson interval
    at Kish's effective sample size (see the module docstring).
    """
    y, pi = _sample_arrays(values, inclusion_probabilities)
    if np.any((y < 0) | (y > 1)):
        raise ApplicationError("Values must lie between 0 and 1.", field="values")
    _check_confidence(confidence)
    weights = 1 / pi
    value = float(np.sum(weights * y) / np.sum(weights))
    effective_n = float(np.sum(weights) ** 2 / np.sum(weights**2))
    low, high = proportion_confint(value * effective_n, effective_n, alpha=1 - confidence, method="wilson")
    return Estimate(value, float(low), float(high), len(y))


def sample_size(
    *, p: float = 0.5, margin: float, confidence: float = DEFAULT_CONFIDENCE, population: int | None = None
) -> int:
    """Sample size for estimating a proportion near ``p`` to within ``margin``: ceil(z^2 p (1 - p) / e^2).

    ``p = 0.5`` is the conservative default when the rate is unknown. With ``population`` the
    finite-population correction applies, so a small queue is not asked for more decisions than it has.
    """
    if not 0 <= p <= 1:
        raise ApplicationError("The expected proportion must be between 0 and 1.", field="p")
    if not 0 < margin < 1:
        raise ApplicationError("The margin must be between 0 and 1.", field="margin")
    _check_confidence(confidence)
    z = float(scipy_stats.norm.ppf(1 - (1 - confidence) / 2))
    n = z**2 * p * (1 - p) / margin**2
    if population is not None:
        if population < 1:
            raise ApplicationError("The population must hold at least one decision.", field="population")
        n = n / (1 + (n - 1) / population)
    # Round away float noise (384.00000000001) before rounding up.
    return max(1, math.ceil(round(n, 9)))


class ErrorType(StrEnum):
    FALSE_POSITIVE = "false_positive"  # actioned content that was within policy
    FALSE_NEGATIVE = "false_negative"  # left up content that violated policy
    WRONG_POLICY = "wrong_policy"  # right action, cited the wrong policy
    WRONG_ACTION = "wrong_action"  # right policy, too harsh or too lenient an action


@dataclass(frozen=True)
class QaOutcome:
    """One QA-reviewed decision: ``error`` is None when QA agreed; ``severity`` is that error's weight."""

    error: ErrorType | None
    severity: float = 0.0
    inclusion_probability: float = 1.0


def quality_score(
    outcomes: Sequence[QaOutcome], *, max_severity: float = 1.0, confidence: float = DEFAULT_CONFIDENCE
) -> Estimate:
    """Severity-weighted quality score in [0, 1] of one reviewer's or vendor's decisions (module docstring)."""
    if max_severity <= 0:
        raise ApplicationError("The top of the severity scale must be positive.", field="max_severity")
    for outcome in outcomes:
        if outcome.error is None and outcome.severity != 0:
            raise ApplicationError("An agreed decision has no error severity.", field="severity")
        if outcome.error is not None and not 0 < outcome.severity <= max_severity:
            raise ApplicationError(f"An error's severity must be in (0, {max_severity}].", field="severity")
    loss = weighted_proportion(
        [outcome.severity / max_severity for outcome in outcomes],
        [outcome.inclusion_probability for outcome in outcomes],
        confidence=confidence,
    )
    return Estimate(1 - loss.value, 1 - loss.high, 1 - loss.low, loss.n)


def error_rates_by_type(
    outcomes: Sequence[QaOutcome], *, confidence: float = DEFAULT_CONFIDENCE
) -> dict[ErrorType, Estimate]:
    """Weighted share of decisions with each error type, for a scorecard's breakdown of the quality score."""
    probabilities = [outcome.inclusion_probability for outcome in outcomes]
    return {
        error_type: weighted_proportion(
            [float(outcome.error == error_type) for outcome in outcomes], probabilities, confidence=confidence
        )
        for error_type in ErrorType
    }


def _pairable_units(matrix: npt.ArrayLike) -> FloatArray:
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2:
        raise ApplicationError("Ratings must be a raters x units matrix.", field="matrix")
    pairable = values[:, np.sum(~np.isnan(values), axis=0) >= 2]
    if pairable.shape[1] == 0:
        raise ApplicationError("Agreement needs at least one unit rated by two raters.", field="matrix")
    return pairable


def _unit_pair_agreement(column: FloatArray) -> float:
    _, counts = np.unique(column[~np.isnan(column)], return_counts=True)
    m = counts.sum()
    return float(np.sum(counts * (counts - 1)) / (m * (m - 1)))


def _kappa(a: npt.NDArray[np.intp], b: npt.NDArray[np.intp]) -> float:
    # One label throughout makes chance agreement 1 and kappa 0/0; see the module docstring.
    if len(np.union1d(a, b)) == 1:
        return 1.0
    return float(cohen_kappa_score(a, b))


def _fleiss(table: FloatArray) -> float:
    n = table.sum(axis=1)
    per_unit = np.sum(table * (table - 1), axis=1) / (n * (n - 1))
    shares = table.sum(axis=0) / table.sum()
    chance = float(np.sum(shares**2))
    # One category throughout: chance agreement 1 and kappa 0/0; see the module docstring.
    if np.isclose(chance, 1.0):
        return 1.0
    return float((per_unit.mean() - chance) / (1 - chance))


def _alpha(values: FloatArray, domain: FloatArray, level: Level) -> float:
    # The package refuses a one-value domain (0/0); see the module docstring.
    if len(np.unique(values[~np.isnan(values)])) == 1:
        return 1.0
    return float(krippendorff.alpha(reliability_data=values, value_domain=domain, level_of_measurement=level))


def _sample_arrays(values: Sequence[float], inclusion_probabilities: Sequence[float]) -> tuple[FloatArray, FloatArray]:
    y = np.asarray(values, dtype=np.float64)
    pi = np.asarray(inclusion_probabilities, dtype=np.float64)
    if len(y) != len(pi):
        raise ApplicationError(
            "Every sampled decision needs its inclusion probability.", field="inclusion_probabilities"
        )
    if len(y) == 0:
        raise ApplicationError("The sample is empty.", field="values")
    if np.any((pi <= 0) | (pi > 1)):
        raise ApplicationError("Inclusion probabilities must be in (0, 1].", field="inclusion_probabilities")
    return y, pi


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ApplicationError("The confidence level must be between 0 and 1.", field="confidence")


@dataclass(frozen=True)
class PairAgreement:
    """Percent agreement, Cohen's kappa and Krippendorff's alpha (nominal) of two raters, from one table."""

    agreement: Estimate
    kappa: Estimate
    alpha: Estimate


def pair_agreement(
    pairs: Mapping[tuple[Any, Any], int],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> PairAgreement:
    """The three two-rater figures from a confusion table {(first rater's label, second's): units}, so rollups that
    keep counts per label pair report them without the units. Values equal ``percent_agreement``,
    ``cohen_kappa`` and ``krippendorff_alpha`` on the units the table counts (nominal, no missing ratings):
    each depends only on the table. Intervals: a percentile bootstrap over units as theirs, drawn as multinomial
    resamples of the table (resampling units with replacement is exactly that), vectorised, so it costs the same
    for 40 units as for 400,000."""
    _check_confidence(confidence)
    # Labels in a fixed order: the same table, however it was summed, draws the same resamples.
    labels = sorted({label for pair in pairs for label in pair}, key=repr)
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    cells = np.zeros(k * k, dtype=np.float64)
    for (a, b), n in pairs.items():
        cells[index[a] * k + index[b]] += n
    total = int(cells.sum())
    if total < 2:
        raise ApplicationError("Agreement needs at least two rated units.", field="pairs")

    def figures(tables: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        t = tables.reshape(-1, k, k)
        n = t.sum(axis=(1, 2))
        same = np.trace(t, axis1=1, axis2=2)
        first, second = t.sum(axis=2), t.sum(axis=1)
        observed = same / n
        chance = np.sum(first * second, axis=1) / n**2
        pooled = first + second  # the coincidence matrix's margins: 2n ratings
        spread = (2 * n) ** 2 - np.sum(pooled**2, axis=1)
        one_label = np.count_nonzero(pooled, axis=1) == 1  # degenerate: 0/0, reported as 1.0 (module docstring)
        with np.errstate(divide="ignore", invalid="ignore"):
            kappa = np.where(one_label, 1.0, (observed - chance) / (1 - chance))
            alpha = np.where(one_label, 1.0, 1 - (2 * n - 1) * (2 * n - 2 * same) / spread)
        return observed, kappa, alpha

    values = [float(v[0]) for v in figures(cells[None, :])]
    if n_resamples == 0:
        intervals = [(math.nan, math.nan)] * 3
    else:
        # Only the table's non-empty cells can be drawn: the multinomial runs over those (its cost is per cell).
        filled = np.flatnonzero(cells)
        draws = np.zeros((n_resamples, k * k), dtype=np.float64)
        draws[:, filled] = np.random.default_rng(seed).multinomial(total, cells[filled] / total, size=n_resamples)
        tail = (1 - confidence) / 2 * 100
        intervals = [(float(np.percentile(f, tail)), float(np.percentile(f, 100 - tail))) for f in figures(draws)]
    degenerate = np.count_nonzero(cells.reshape(k, k).sum(axis=0) + cells.reshape(k, k).sum(axis=1)) == 1
    agreement, kappa, alpha = (
        Estimate(value, low, high, total, degenerate=bool(degenerate) and i > 0)
        for i, (value, (low, high)) in enumerate(zip(values, intervals, strict=True))
    )
    return PairAgreement(agreement, kappa, alpha)


def weighted_proportion_from_sums(
    weighted: float, weight: float, weight_sq: float, n: int, *, confidence: float = DEFAULT_CONFIDENCE
) -> Estimate:
    """``weighted_proportion`` from its sums over the sample: sum(w y), sum(w), sum(w^2) and the sample size,
    with w = 1 / pi; what a rollup keeps instead of the sampled values."""
    if n <= 0 or weight <= 0 or weight_sq <= 0:
        raise ApplicationError("The sample is empty.", field="values")
    _check_confidence(confidence)
    value = min(1.0, max(0.0, weighted / weight))
    effective_n = weight**2 / weight_sq
    low, high = proportion_confint(value * effective_n, effective_n, alpha=1 - confidence, method="wilson")
    return Estimate(value, float(low), float(high), n)
