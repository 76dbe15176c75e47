"""Distances, G-test, noise floor, intervals and paired draws of the reference gap (analysis/reference_gap.py).

References: hand arithmetic, SciPy (jensenshannon, power_divergence, chi2, multinomial),
statsmodels (Holm), exact enumeration of multinomial outcomes, and row-level loops written
here; the module's own output is never its own reference.
"""

import itertools
import math
import random

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from ray_bench.analysis import reference_gap as rg
from ray_bench.errors import AnalysisError


def _exact_tv_distribution(n, q):
    """Every outcome of Multinomial(n, q): (TV values, probabilities), by enumeration."""
    k = len(q)
    tv, prob = [], []
    for cut in itertools.combinations(range(n + k - 1), k - 1):  # stars and bars
        bounds = (-1, *cut, n + k - 1)
        counts = [bounds[i + 1] - bounds[i] - 1 for i in range(k)]
        tv.append(0.5 * sum(abs(c / n - qi) for c, qi in zip(counts, q)))
        prob.append(sps.multinomial.pmf(counts, n, q))
    return np.array(tv), np.array(prob)


# ----------------------------------------------------------------------------- distances

def test_tv_and_max_deviation_by_hand():
    p, q = [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]
    assert rg.total_variation(p, q) == pytest.approx(0.1)
    dev, top = rg.max_deviation([0.5, 0.25, 0.25], [0.25, 0.5, 0.25])
    assert dev == 0.25 and top == 0  # the first of two exactly tied categories
    dev, top = rg.max_deviation([[0.1, 0.9], [np.nan, np.nan]], [0.5, 0.5])
    assert dev[0] == pytest.approx(0.4) and top[0] == 0 and np.isnan(dev[1]) and top[1] == -1


def test_tv_of_disjoint_distributions_is_one_and_broadcasts():
    out = rg.total_variation([[1.0, 0.0], [0.5, 0.5]], [0.0, 1.0])
    np.testing.assert_allclose(out, [1.0, 0.5])


@pytest.mark.parametrize("p, q", [([0.5, 0.3, 0.2], [0.4, 0.4, 0.2]), ([1.0, 0.0, 0.0], [0.2, 0.3, 0.5]),
                                  ([0.0, 1.0], [1.0, 0.0])])
def test_js_divergence_is_scipy_distance_squared(p, q):
    assert rg.js_divergence(p, q) == pytest.approx(jensenshannon(p, q) ** 2, abs=1e-12)


def test_js_of_disjoint_distributions_is_ln2():
    assert rg.js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(math.log(2))


def test_signed_gaps_and_ratio_with_zero_reference():
    gap, ratio = rg.signed_gaps([0.5, 0.5, 0.0], [0.25, 0.75, 0.0])
    np.testing.assert_allclose(gap, [0.25, -0.25, 0.0])
    assert ratio[0] == 2.0 and ratio[1] == pytest.approx(2 / 3) and np.isnan(ratio[2])
    assert rg.signed_gaps([0.1], [0.0])[1][0] == np.inf


# ----------------------------------------------------------------------------- G-test

def test_g_test_by_hand_with_two_degrees_of_freedom():
    # Expected 25, 15, 10: G = 2 (30 ln 1.2 + 15 ln 1 + 5 ln 0.5); chi2 with 2 df has sf = exp(-x / 2).
    g = rg.g_test([30, 15, 5], [0.5, 0.3, 0.2])
    hand = 2 * (30 * math.log(1.2) + 5 * math.log(0.5))
    assert g.statistic == pytest.approx(hand) and g.df == 2
    assert g.p_value == pytest.approx(math.exp(-hand / 2))


def test_g_statistic_vectorized_matches_scipy():
    rng = np.random.default_rng(3)
    q = np.array([0.1, 0.2, 0.3, 0.4])
    counts = rng.multinomial(40, q, size=50)
    ours = rg.g_statistic(counts, q)
    for c, g in zip(counts, ours):
        ref = sps.power_divergence(c, f_exp=40 * q, lambda_="log-likelihood").statistic
        assert g == pytest.approx(ref)


def test_g_test_zero_reference_share():
    impossible = rg.g_test([3, 2, 1], [0.6, 0.4, 0.0])
    assert impossible.statistic == math.inf and impossible.p_value == 0.0 and impossible.df == 1
    dropped = rg.g_test([6, 4, 0], [0.6, 0.4, 0.0])  # the empty zero-share category leaves the test
    assert dropped.df == 1 and dropped.statistic == pytest.approx(0.0, abs=1e-12) and dropped.p_value == pytest.approx(1.0)
    assert rg.g_statistic([[1, 1, 1]], [0.5, 0.5, 0.0])[0] == math.inf
    assert math.isnan(rg.g_test([0, 0], [0.5, 0.5]).p_value)


# ----------------------------------------------------------------------------- noise floor

def test_noise_floor_matches_exact_enumeration_and_a_naive_loop():
    q, n = [0.5, 0.3, 0.2], 20
    tv, prob = _exact_tv_distribution(n, q)
    exact_mean = float((tv * prob).sum())
    floor = rg.noise_floor(np.array(q), n, draws=20_000, seed=1)
    assert abs(floor.mean - exact_mean) < 4 * floor.sd / math.sqrt(floor.draws)
    order = np.argsort(tv)
    cdf = np.cumsum(prob[order])
    at_q95 = cdf[np.searchsorted(tv[order], floor.q95 + 1e-12) - 1]
    assert 0.94 <= at_q95 <= 0.995  # a discrete distribution: P(TV <= q95) just at or above 95%
    # A naive simulation with the standard library's generator, one answer at a time.
    gen = random.Random(7)
    naive = []
    for _ in range(4000):
        answers = gen.choices(range(3), weights=q, k=n)
        naive.append(0.5 * sum(abs(answers.count(i) / n - q[i]) for i in range(3)))
    se = math.sqrt(np.var(naive, ddof=1) / len(naive) + floor.sd ** 2 / floor.draws)
    assert abs(np.mean(naive) - floor.mean) < 4 * se


def test_noise_floor_shrinks_as_one_over_sqrt_n_and_fits_the_normal_approximation():
    q = np.array([0.7, 0.2, 0.1])
    f100, f400 = (rg.noise_floor(q, n, draws=20_000, seed=2) for n in (100, 400))
    assert f400.mean / f100.mean == pytest.approx(0.5, abs=0.03)
    assert f400.q95 / f100.q95 == pytest.approx(0.5, abs=0.05)
    # Notes 4.2: E[TV] ~ 0.5 sum sqrt(2 q (1 - q) / (pi N)).
    hand = 0.5 * sum(math.sqrt(2 * x * (1 - x) / (math.pi * 400)) for x in q)
    assert f400.mean == pytest.approx(hand, rel=0.03)


def test_noise_floor_of_eight_uniform_classes_as_in_the_notes():
    # audits-and-exports.md 4.2: "about 0.15 at N = 50 and about 0.047 at N = 500".
    q = np.full(8, 1 / 8)
    assert rg.noise_floor(q, 50, draws=10_000, seed=0).mean == pytest.approx(0.15, abs=0.01)
    assert rg.noise_floor(q, 500, draws=10_000, seed=0).mean == pytest.approx(0.047, abs=0.003)


def test_noise_floor_is_seeded_and_validates():
    q = np.array([0.5, 0.5])
    assert rg.noise_floor(q, 30, draws=500, seed=4).mean == rg.noise_floor(q, 30, draws=500, seed=4).mean
    with pytest.raises(AnalysisError, match="n >= 1"):
        rg.noise_floor(q, 0)
    with pytest.raises(AnalysisError, match="distribution"):
        rg.noise_floor(np.array([0.5, 0.6]), 10)


def test_monte_carlo_p_value():
    null = np.array([0.0, 1.0, 2.0, 3.0])
    assert rg.monte_carlo_p(2.0, null) == pytest.approx(3 / 5)
    assert rg.monte_carlo_p(math.inf, null) == pytest.approx(1 / 5)
    assert math.isnan(rg.monte_carlo_p(math.nan, null))


# ----------------------------------------------------------------------------- intervals

def test_tv_metric_leaves_uncategorized_answers_out():
    metric = rg.tv_metric(np.array([0.5, 0.5]))
    assert metric.n_categories == 3
    assert metric.statistic(np.array([3, 1, 6])) == pytest.approx(0.25)  # shares 0.75 / 0.25
    assert np.isnan(metric.statistic(np.array([0, 0, 5])))


@pytest.mark.parametrize("method", ["bootstrap", "dirichlet"])
def test_interval_coverage_is_near_nominal(method):
    # True shares p, reference q: TV(p, q) = 0.2, well away from the boundary at 0.
    p, q = np.array([0.6, 0.3, 0.1]), np.array([0.4, 0.4, 0.2])
    truth = 0.2
    rng = np.random.default_rng(11)
    covered = 0
    reps = 200
    for i in range(reps):
        counts = np.append(rng.multinomial(200, p), 0)
        lo, hi = rg.tv_interval(counts, q, method=method, draws=400, seed=i)
        covered += lo <= truth <= hi
    assert 0.88 <= covered / reps <= 0.99


def test_interval_settings_are_checked():
    with pytest.raises(AnalysisError, match="unknown interval method"):
        rg.tv_interval(np.array([1, 1, 0]), np.array([0.5, 0.5]), method="wald")
    lo, hi = rg.tv_interval(np.array([0, 0, 4]), np.array([0.5, 0.5]))
    assert math.isnan(lo) and math.isnan(hi)


def _row_level(joint):
    k = joint.shape[0]
    pairs = [(i, j) for i in range(k) for j in range(k) for _ in range(joint[i, j])]
    return np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])


def _tv_rows(codes, q):
    k = len(q)
    counts = np.bincount(codes, minlength=k + 1)[:k]
    return 0.5 * np.abs(counts / counts.sum() - q).sum() if counts.sum() else np.nan


def test_paired_draws_match_row_level_swap_and_bootstrap_loops():
    q = np.array([0.3, 0.7])
    # (base, variant) outcomes of 40 shared questions; index 2 = no category.
    joint = np.array([[6, 8, 1], [2, 18, 0], [0, 3, 2]])
    base, variant = _row_level(joint)
    observed = _tv_rows(variant, q) - _tv_rows(base, q)
    null, boot = rg.paired_tv_draws(joint, q, n_permutations=4000, n_bootstrap=4000, seed=5)
    gen = np.random.default_rng(9)
    naive_null, naive_boot = [], []
    for _ in range(2000):
        swap = gen.random(base.size) < 0.5
        b, v = np.where(swap, variant, base), np.where(swap, base, variant)
        naive_null.append(_tv_rows(v, q) - _tv_rows(b, q))
        idx = gen.integers(0, base.size, base.size)
        naive_boot.append(_tv_rows(variant[idx], q) - _tv_rows(base[idx], q))
    p_ours = rg.two_sided_p(observed, null)
    p_naive = (1 + np.sum(np.abs(naive_null) >= abs(observed) - 1e-12)) / (1 + len(naive_null))
    assert abs(p_ours - p_naive) < 4 * math.sqrt(p_naive * (1 - p_naive) / 2000) + 0.01
    lo, hi = rg.percentile_interval(boot)
    naive_lo, naive_hi = np.nanpercentile(naive_boot, [2.5, 97.5])
    assert lo == pytest.approx(naive_lo, abs=0.02) and hi == pytest.approx(naive_hi, abs=0.02)
    assert np.mean(boot) == pytest.approx(np.nanmean(naive_boot), abs=0.01)


def test_identical_pairs_give_no_change():
    joint = np.diag([10, 5, 3])
    null, boot = rg.paired_tv_draws(joint, np.array([0.5, 0.5]), n_permutations=200, n_bootstrap=200, seed=0)
    assert np.all(null == 0) and np.all(boot == 0)
    assert rg.two_sided_p(0.0, null) == 1.0


# ----------------------------------------------------------------------------- aggregation

def test_aggregate_by_hand():
    agg = rg.aggregate(np.array([0.1, 0.3, np.nan, 0.2]), np.array([1.0, 2.0, 3.0, 1.0]))
    assert (agg.n, agg.worst_index) == (3, 1)
    assert agg.mean == pytest.approx(0.2) and agg.worst == pytest.approx(0.3)
    assert agg.weighted == pytest.approx((0.1 + 0.6 + 0.2) / 4)
    assert math.isnan(rg.aggregate(np.array([0.1])).weighted)
    assert rg.aggregate(np.array([np.nan])).worst_index == -1


def test_wilcoxon_edge_cases():
    d = np.array([0.1, -0.02, 0.05, np.nan, 0.07, 0.03])
    assert rg.wilcoxon_p(d) == pytest.approx(sps.wilcoxon(d[~np.isnan(d)]).pvalue)
    assert rg.wilcoxon_p(np.zeros(4)) == 1.0
    assert math.isnan(rg.wilcoxon_p(np.array([np.nan])))
