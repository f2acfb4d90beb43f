"""qa.statistics against independent computations on the same ratings: scikit-learn, the krippendorff
package, and formulas worked by hand in the test, plus a seeded stratified-sampling simulation."""

from __future__ import annotations

import math
from collections import Counter
from itertools import permutations

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from ops_platform.core.errors import ApplicationError
from qa.statistics import (
    ErrorType,
    Estimate,
    QaOutcome,
    accuracy,
    agreement_rate,
    bootstrap_ci,
    cohen_kappa,
    error_rates_by_type,
    fleiss_kappa,
    horvitz_thompson_total,
    kappa_from_counts,
    krippendorff_alpha,
    percent_agreement,
    quality_score,
    rating_matrix,
    sample_size,
    weighted_proportion,
)
from tests.qa.multirater import as_matrix, count_table, fleiss_by_hand, multirater_units

NAN = np.nan
Z95 = 1.959963984540054

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", example C: 4 observers, 12 units,
# missing values; the paper gives nominal alpha = 0.743.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)


def generated_ratings(*, raters: int, units: int, missing: float, seed: int, labels: int = 4) -> np.ndarray:
    """Raters who give the unit's true label 75% of the time and a random label otherwise."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, labels, size=units)
    guesses = rng.integers(0, labels, size=(raters, units))
    matrix = np.where(rng.random((raters, units)) < 0.75, truth, guesses).astype(float)
    matrix[rng.random((raters, units)) < missing] = NAN
    return matrix


def coincidence_matrix(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """o[c, k] = sum over units of (ordered c-k value pairs in the unit) / (m_u - 1), by hand."""
    values = np.unique(matrix[~np.isnan(matrix)])
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for column in matrix.T:
        present = column[~np.isnan(column)]
        if len(present) < 2:
            continue
        for first, second in permutations(present, 2):
            o[index[first], index[second]] += 1 / (len(present) - 1)
    return o, values


def nominal_alpha_by_hand(matrix: np.ndarray) -> float:
    """alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k (Krippendorff 2011, nominal)."""
    o, _ = coincidence_matrix(matrix)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    disagreement_observed = o.sum() - np.trace(o)
    disagreement_expected = n_c.sum() ** 2 - np.sum(n_c**2)
    return 1 - (n - 1) * disagreement_observed / disagreement_expected


def kappa_by_hand(a: list[str], b: list[str]) -> float:
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    chance = sum((a.count(label) / len(a)) * (b.count(label) / len(b)) for label in set(a) | set(b))
    return (observed - chance) / (1 - chance)


def test_alpha_matches_the_published_example_with_missing_ratings():
    o, values = coincidence_matrix(KRIPPENDORFF_2011)
    # The paper's value totals: 40 pairable values, n_1..n_5 = 9, 13, 10, 5, 3.
    assert list(values) == [1, 2, 3, 4, 5]
    assert o.sum(axis=1) == pytest.approx([9, 13, 10, 5, 3])
    assert nominal_alpha_by_hand(KRIPPENDORFF_2011) == pytest.approx(0.743, abs=5e-4)

    alpha = krippendorff_alpha(KRIPPENDORFF_2011)

    assert alpha.value == pytest.approx(nominal_alpha_by_hand(KRIPPENDORFF_2011))
    assert alpha.n == 11  # the twelfth unit was rated once and says nothing about agreement


@pytest.mark.parametrize(("raters", "missing", "seed"), [(2, 0.0, 1), (3, 0.2, 2), (5, 0.4, 3), (8, 0.6, 4)])
def test_alpha_matches_the_package_and_the_hand_computation_on_generated_ratings(raters, missing, seed):
    matrix = generated_ratings(raters=raters, units=150, missing=missing, seed=seed)

    alpha = krippendorff_alpha(matrix, n_resamples=200)

    assert alpha.value == pytest.approx(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"))
    assert alpha.value == pytest.approx(nominal_alpha_by_hand(matrix))
    assert alpha.low <= alpha.value <= alpha.high


@pytest.mark.parametrize("level", ["ordinal", "interval", "ratio"])
def test_alpha_at_other_levels_matches_the_package(level):
    matrix = generated_ratings(raters=4, units=80, missing=0.3, seed=5, labels=5) + 1

    alpha = krippendorff_alpha(matrix, level=level, n_resamples=200)

    assert alpha.value == pytest.approx(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))


def test_kappa_matches_scikit_learn_and_the_hand_formula_on_generated_pairs():
    matrix = generated_ratings(raters=2, units=300, missing=0.0, seed=6)
    labels = np.array(["allow", "remove", "restrict", "escalate"])
    a, b = list(labels[matrix[0].astype(int)]), list(labels[matrix[1].astype(int)])

    kappa = cohen_kappa(a, b, n_resamples=500)

    assert kappa.value == pytest.approx(cohen_kappa_score(a, b))
    assert kappa.value == pytest.approx(kappa_by_hand(a, b))
    assert kappa.n == 300
    assert kappa.low < kappa.value < kappa.high


@pytest.mark.parametrize(
    "labels",
    [
        [0, 1, 2, 3],
        [True, False, True, False],
        ["allow", "remove", "restrict", "escalate"],
        [0, "remove", True, 2.5],  # mixed hashables, as the docstring promises
    ],
    ids=["int", "bool", "str", "mixed"],
)
def test_kappa_works_on_any_hashable_labels_and_matches_scikit_learn(labels):
    matrix = generated_ratings(raters=2, units=200, missing=0.0, seed=11)
    a = [labels[int(code)] for code in matrix[0]]
    b = [labels[int(code)] for code in matrix[1]]
    # scikit-learn's own answer on the same data as integer codes (it refuses object arrays of ints/bools).
    position = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    expected = cohen_kappa_score([position[x] for x in a], [position[x] for x in b])

    kappa = cohen_kappa(a, b, n_resamples=100)

    assert kappa.value == pytest.approx(expected, abs=1e-12)
    if len({type(x) for x in labels}) == 1:  # plain lists of one type scikit-learn takes as they are
        assert kappa.value == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert kappa.low <= kappa.value <= kappa.high


def test_kappa_matches_the_textbook_two_by_two_example():
    # 20 yes/yes, 15 no/no, 5 yes/no, 10 no/yes: observed 0.7, chance 0.5, kappa 0.4.
    a = ["yes"] * 20 + ["no"] * 15 + ["yes"] * 5 + ["no"] * 10
    b = ["yes"] * 20 + ["no"] * 15 + ["no"] * 5 + ["yes"] * 10

    assert cohen_kappa(a, b, n_resamples=100).value == pytest.approx(0.4)


def test_one_label_throughout_is_perfect_agreement_not_nan():
    kappa = cohen_kappa(["allow"] * 10, ["allow"] * 10, n_resamples=100)
    alpha = krippendorff_alpha([[1, 1, 1, NAN], [1, 1, NAN, 1], [1, NAN, 1, 1]], n_resamples=100)

    assert (kappa.value, kappa.low, kappa.high, kappa.degenerate) == (1.0, 1.0, 1.0, True)
    assert (alpha.value, alpha.degenerate) == (1.0, True)


def test_agreement_with_nothing_to_compare_is_refused():
    with pytest.raises(ApplicationError, match="rated by two raters"):
        krippendorff_alpha([[1, NAN], [NAN, 2]])
    with pytest.raises(ApplicationError, match="same units"):
        cohen_kappa(["allow"], ["allow", "remove"])


def test_percent_agreement_is_the_share_of_agreeing_rater_pairs_per_unit():
    # Unit 1: 3 raters agree (1); unit 2: one of three pairs agrees (1/3); unit 3: two raters differ (0);
    # unit 4: rated once, dropped.
    matrix = np.array([[1, 1, 1, 2], [1, 1, 2, NAN], [1, 2, NAN, NAN]])

    agreement = percent_agreement(matrix, n_resamples=100)

    assert agreement.value == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert agreement.n == 3


def test_percent_agreement_of_two_raters_is_the_share_of_units_they_agree_on():
    matrix = generated_ratings(raters=2, units=200, missing=0.0, seed=7)

    assert percent_agreement(matrix, n_resamples=100).value == pytest.approx(np.mean(matrix[0] == matrix[1]))


def test_rating_matrix_codes_labels_and_leaves_missing_ratings_empty():
    matrix, labels = rating_matrix(
        [("item-1", "ana", "remove"), ("item-1", "bo", "allow"), ("item-2", "bo", "remove")],
        labels=["allow", "remove"],
    )

    assert labels == ["allow", "remove"]
    np.testing.assert_array_equal(matrix, [[1, NAN], [0, 1]])


def test_bootstrap_is_deterministic_with_a_seed_and_covers_the_estimate():
    matrix = generated_ratings(raters=3, units=120, missing=0.2, seed=8)

    first = krippendorff_alpha(matrix, n_resamples=300, seed=11)
    again = krippendorff_alpha(matrix, n_resamples=300, seed=11)
    other = krippendorff_alpha(matrix, n_resamples=300, seed=12)

    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert first.low < first.value < first.high


def test_bootstrap_interval_is_the_percentile_interval_of_the_resampled_statistic():
    values = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    rng = np.random.default_rng(3)
    means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(999)]

    low, high = bootstrap_ci(lambda i: float(values[i].mean()), len(values), n_resamples=999, seed=3)

    # Within one step of the resampled means (0.1 / 2), whatever order scipy draws in; the basic
    # (reverse-percentile) interval would be (0.495, 1.0).
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), abs=0.051)
    assert 0 <= low < 0.7 < high <= 1


def test_accuracy_has_the_wilson_interval_worked_by_hand():
    p, n = 8 / 10, 10
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2))

    estimate = accuracy(8, 10)

    assert (estimate.value, estimate.n) == (0.8, 10)
    assert (estimate.low, estimate.high) == pytest.approx((centre - half, centre + half))
    assert (estimate.low, estimate.high) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_weighted_proportion_with_equal_weights_is_plain_accuracy():
    assert weighted_proportion([1] * 8 + [0] * 2, [0.1] * 10) == accuracy(8, 10)


def stratified_population(rng: np.random.Generator) -> list[tuple[np.ndarray, float]]:
    """Three queues: many low-risk decisions sampled lightly, few high-risk ones sampled heavily."""
    strata = [(20_000, 0.02, 0.01), (4_000, 0.10, 0.05), (1_000, 0.30, 0.20)]  # size, error rate, sampling rate
    return [((rng.random(size) < rate).astype(float), sampled) for size, rate, sampled in strata]


def draw_sample(rng: np.random.Generator, population: list[tuple[np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray]:
    errors, probabilities = [], []
    for stratum, rate in population:
        count = round(rate * len(stratum))
        errors.append(rng.choice(stratum, size=count, replace=False))
        probabilities.append(np.full(count, count / len(stratum)))
    return np.concatenate(errors), np.concatenate(probabilities)


def test_weighted_estimate_recovers_the_population_error_rate_from_a_stratified_sample():
    rng = np.random.default_rng(2025)
    population = stratified_population(rng)
    all_errors = np.concatenate([stratum for stratum, _ in population])
    true_rate, true_total = all_errors.mean(), all_errors.sum()

    estimates, totals, unweighted, covered = [], [], [], 0
    for _ in range(300):
        errors, probabilities = draw_sample(rng, population)
        estimate = weighted_proportion(list(errors), list(probabilities))
        estimates.append(estimate.value)
        totals.append(horvitz_thompson_total(list(errors), list(probabilities)))
        unweighted.append(errors.mean())
        covered += estimate.low <= true_rate <= estimate.high

    assert np.mean(unweighted) - true_rate > 0.08  # an unweighted sample over-counts the risky queue
    assert abs(np.mean(estimates) - true_rate) < 0.002
    assert np.mean(totals) == pytest.approx(true_total, rel=0.02)
    # Kish's effective size ignores the gain from stratifying, so the interval errs on the wide side.
    assert covered / 300 >= 0.93


def test_sample_size_follows_the_formula_with_and_without_a_finite_population():
    assert sample_size(margin=0.05) == 385  # 1.96^2 * 0.25 / 0.05^2 = 384.1
    assert sample_size(p=0.1, margin=0.02, confidence=0.9) == math.ceil(1.6448536269514722**2 * 0.09 / 0.0004)
    assert sample_size(margin=0.05, population=1000) == 278  # 384.1 / (1 + 383.1 / 1000) = 277.7
    assert sample_size(margin=0.05, population=50) <= 50


def test_quality_score_weighs_errors_by_severity_and_by_inclusion_probability():
    agreed = QaOutcome(error=None, inclusion_probability=0.5)
    minor = QaOutcome(error=ErrorType.WRONG_POLICY, severity=1, inclusion_probability=0.5)
    severe = QaOutcome(error=ErrorType.FALSE_NEGATIVE, severity=4, inclusion_probability=0.25)

    score = quality_score([agreed, agreed, minor, severe], max_severity=4)

    # weights 2, 2, 2, 4; loss = (2 * 1 + 4 * 4) / (4 * 10) = 0.45
    assert score.value == pytest.approx(0.55)
    assert score.low < 0.55 < score.high
    assert quality_score([agreed] * 5).value == 1.0
    assert quality_score([severe] * 5, max_severity=4).value == 0.0


def test_error_rates_by_type_break_down_the_weighted_decisions():
    outcomes = [
        QaOutcome(error=None, inclusion_probability=0.5),
        QaOutcome(error=ErrorType.FALSE_POSITIVE, severity=0.5, inclusion_probability=0.5),
        QaOutcome(error=ErrorType.FALSE_NEGATIVE, severity=1, inclusion_probability=0.25),
    ]

    rates = error_rates_by_type(outcomes)

    assert {error: rate.value for error, rate in rates.items()} == pytest.approx(
        {
            ErrorType.FALSE_POSITIVE: 0.25,
            ErrorType.FALSE_NEGATIVE: 0.5,
            ErrorType.WRONG_POLICY: 0.0,
            ErrorType.WRONG_ACTION: 0.0,
        }
    )
    assert rates[ErrorType.WRONG_POLICY].high > 0  # no errors seen is not proof of none


@pytest.mark.parametrize(
    "outcome",
    [
        QaOutcome(error=None, severity=1),
        QaOutcome(error=ErrorType.WRONG_ACTION, severity=0),
        QaOutcome(error=ErrorType.WRONG_ACTION, severity=1, inclusion_probability=0),
    ],
)
def test_quality_score_refuses_inconsistent_outcomes(outcome):
    with pytest.raises(ApplicationError):
        quality_score([outcome])


def test_estimate_reads_as_value_interval_and_size():
    estimate = Estimate(0.8, 0.49, 0.94, 10)

    assert str(estimate) == "0.800 [0.490, 0.940] n=10"
    assert estimate.as_dict() == {"value": 0.8, "low": 0.49, "high": 0.94, "n": 10, "degenerate": False}


def test_no_resamples_gives_the_point_estimate_without_an_interval():
    a = ["x", "y", "x", "x", "y", "y", "x"]
    b = ["x", "y", "y", "x", "y", "x", "x"]
    estimate = cohen_kappa(a, b, n_resamples=0)
    assert estimate.value == pytest.approx(cohen_kappa_score(a, b))
    assert math.isnan(estimate.low)
    assert math.isnan(estimate.high)


def test_kappa_from_counts_equals_kappa_on_the_labels() -> None:
    rng = np.random.default_rng(5)
    a = rng.choice(["none", "spam", "hate"], 400).tolist()
    b = [x if rng.random() < 0.7 else rng.choice(["none", "spam", "hate"]) for x in a]
    counts = Counter(zip(a, b, strict=True))
    assert kappa_from_counts(counts) == pytest.approx(cohen_kappa_score(a, b))
    assert kappa_from_counts({("none", "none"): 7}) == 1.0  # one label throughout, as cohen_kappa
    with pytest.raises(ApplicationError):
        kappa_from_counts({})


def test_multi_rater_figures_match_krippendorff_and_statsmodels_to_1e9():
    units = multirater_units(units=400, raters=12, seed=22)
    matrix = as_matrix(units, 12)
    pairable = [u for u in units if len(u) >= 2]
    assert any(len(u) == 1 for u in units)  # single ratings, which no agreement figure can use
    assert any(sorted(Counter(x for _, x in u).values())[-2:] in ([2, 2], [3, 3], [4, 4]) for u in pairable)  # ties

    alpha = krippendorff_alpha(matrix, n_resamples=200)
    kappa = fleiss_kappa(matrix, n_resamples=200)

    assert alpha.n == kappa.n == len(pairable)
    assert alpha.value == pytest.approx(
        krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"), abs=1e-9
    )
    assert kappa.value == pytest.approx(fleiss_by_hand(count_table(pairable)), abs=1e-9)
    assert alpha.low <= alpha.value <= alpha.high
    assert kappa.low <= kappa.value <= kappa.high
    # With the same number of ratings per unit (an N-review queue), it is statsmodels' Fleiss' kappa exactly.
    for size in range(3, 10):
        same = [u for u in pairable if len(u) == size]
        assert fleiss_kappa(as_matrix(same, 12), n_resamples=0).value == pytest.approx(
            statsmodels_fleiss_kappa(count_table(same), method="fleiss"), abs=1e-9
        )


def test_agreement_rate_is_the_share_of_hits_with_a_bootstrap_interval():
    hits = [True] * 30 + [False] * 10

    rate = agreement_rate(hits, n_resamples=500)

    assert (rate.value, rate.n) == (0.75, 40)
    assert rate.low < 0.75 < rate.high
    with pytest.raises(ApplicationError):
        agreement_rate([])
