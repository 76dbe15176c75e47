"""Count-based paired tests and intervals, checked against independent references.

References are SciPy's ``permutation_test``, row-level simulations written here, exact
enumeration, statsmodels (BH, Wilson, McNemar), fairlearn and hand arithmetic; the module's
own output is never its own reference.
"""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from ray_bench.analysis import stats as st
from ray_bench.errors import AnalysisError

BBQ = st.CountMetric("bbq_ambig", 3, st.bbq_ambig_score)
BBQ_DIS = st.CountMetric("bbq_disambig", 3, st.bbq_disambig_score)
ERR = st.CountMetric("error_rate", 2, st.rate_of(1))


# ----------------------------------------------------------------------------- helpers

def _rows(joint):
    """Row-level (base, variant) outcome arrays with the counts of ``joint`` [K, K]."""
    joint = np.asarray(joint)
    k = joint.shape[0]
    cells = [(i, j) for i in range(k) for j in range(k) for _ in range(joint[i, j])]
    base, variant = (np.array(x, dtype=np.int64) for x in zip(*cells))
    return base, variant


def _counts(rows, k, axis=-1):
    """Counts per category of row arrays along ``axis`` -> [..., k]."""
    rows = np.moveaxis(np.asarray(rows), axis, -1)
    return (rows[..., None] == np.arange(k)).sum(axis=-2)


def _diff_of_rows(metric):
    """statistic(base_rows, variant_rows) = metric(variant) - metric(base), row-level."""
    k, f = metric.n_categories, metric.statistic
    return lambda b, v, axis=-1: f(_counts(v, k, axis)) - f(_counts(b, k, axis))


def _ours(joint, metric, *, seed=7, P=1000, B=1000, **kw):
    """One group through paired_count_tests."""
    return st.paired_count_tests(np.asarray(joint)[None], metric, seeds=[seed],
                                 n_permutations=P, n_bootstrap=B, min_n=1, **kw)


def _mc_tol(p, n, k=4.0):
    """k Monte Carlo standard errors of a proportion estimated from n draws."""
    return k * np.sqrt(max(p * (1 - p), 1e-4) / n)


# ----------------------------------------------------------- 1. vs scipy.permutation_test

@pytest.mark.parametrize("joint, expect", [
    ([[5, 0, 0], [20, 8, 0], [2, 0, 5]], "small"),    # strong shift towards "unknown"
    ([[5, 0, 0], [14, 12, 1], [2, 1, 5]], "small"),   # p around 0.02
    ([[10, 1, 0], [12, 10, 0], [0, 1, 6]], "mid"),    # p around 0.05
    ([[9, 2, 1], [7, 12, 1], [1, 2, 5]], "large"),    # null-like
    ([[10, 3, 2], [3, 8, 2], [2, 3, 7]], "large"),    # symmetric joint
])
def test_permutation_p_matches_scipy(joint, expect):
    base, variant = _rows(joint)
    assert base.size == 40
    ref = sps.permutation_test(
        (base, variant), _diff_of_rows(BBQ), permutation_type="samples", vectorized=True,
        n_resamples=9999, alternative="two-sided", rng=np.random.default_rng(11),
    ).pvalue
    ours = _ours(joint, BBQ, P=20000).p_value[0]
    # scipy doubles the smaller one-sided p; the swap null is symmetric (swapping every
    # pair negates diff), so that estimates the same |diff|-based p-value.
    tol = _mc_tol(ref, 9999) * 2 + _mc_tol(ours, 20000) + 3 / 9999
    assert abs(ours - ref) < tol, (ours, ref)
    assert {"small": ours < 0.03, "mid": 0.02 < ours < 0.15, "large": ours > 0.4}[expect]


# ------------------------------------------------------------- 2. vs a naive row swap

@pytest.mark.parametrize("metric, joint", [
    (BBQ, [[12, 4, 3], [9, 15, 2], [1, 5, 9]]),
    (st.CountMetric("unknown_rate", 3, st.rate_of(0)), [[3, 6, 1], [2, 4, 7], [0, 3, 8]]),
])
def test_null_distribution_matches_row_level_swaps(metric, joint):
    base, variant = _rows(joint)
    r = 20000
    rng = np.random.default_rng(3)
    swap = rng.random((r, base.size)) < 0.5  # each row swapped with probability 1/2
    b_star, v_star = np.where(swap, variant, base), np.where(swap, base, variant)
    naive = _diff_of_rows(metric)(b_star, v_star)
    ours = st.permutation_null(np.array(joint), metric, np.random.default_rng(4), r)
    assert ours.shape == (r,)
    grid = np.union1d(naive, ours)
    cdf_gap = np.abs(np.searchsorted(np.sort(naive), grid, "right") / r
                     - np.searchsorted(np.sort(ours), grid, "right") / r)
    # Two-sample DKW bound at alpha = 1e-4: sqrt(ln(2 / 1e-4) / 2 * (2 / r)) = 0.022.
    assert cdf_gap.max() < 0.023
    assert abs(ours.mean() - naive.mean()) < 4 * naive.std() * np.sqrt(2 / r)
    assert ours.std() == pytest.approx(naive.std(), rel=0.05)
    for q in (5, 25, 50, 75, 95):
        lo, hi = np.percentile(naive, [max(q - 2, 0), min(q + 2, 100)])
        assert lo - 1e-12 <= np.percentile(ours, q) <= hi + 1e-12


# ------------------------------------------------------------ 3. exact enumeration

def _exact_p(joint, metric):
    """Exact swap p-value over all 2^d swaps of the d discordant rows (NaN: not extreme)."""
    base, variant = _rows(joint)
    disc = np.flatnonzero(base != variant)
    masks = np.array(list(itertools.product([False, True], repeat=disc.size)))
    swap = np.zeros((masks.shape[0], base.size), dtype=bool)
    swap[:, disc] = masks
    d = _diff_of_rows(metric)(np.where(swap, variant, base), np.where(swap, base, variant))
    obs = _diff_of_rows(metric)(base, variant)
    with np.errstate(invalid="ignore"):
        return np.mean(np.abs(d) >= np.abs(obs) - 1e-12), d


@pytest.mark.parametrize("metric, joint", [
    (BBQ, [[5, 3, 1], [0, 4, 1], [1, 2, 3]]),      # 8 discordant rows
    (BBQ_DIS, [[2, 3, 0], [1, 0, 0], [4, 0, 0]]),  # 8 discordant rows, some swaps give NaN
])
def test_permutation_p_matches_exact_enumeration(metric, joint):
    exact, null = _exact_p(joint, metric)
    assert null.size == 2 ** 8
    if metric is BBQ_DIS:
        assert np.isnan(null).any()  # the NaN-as-not-extreme rule is exercised
    p = 20000
    ours = _ours(joint, metric, P=p).p_value[0]
    expected = (1 + p * exact) / (1 + p)  # Phipson-Smyth estimate of the exact p
    assert abs(ours - expected) < _mc_tol(exact, p) + 2 / p, (ours, exact)
    # The whole null distribution, value by value.
    draws = st.permutation_null(np.array(joint), metric, np.random.default_rng(5), p)
    for value in np.unique(null[~np.isnan(null)]):
        q_exact = np.mean(np.isclose(null, value))
        assert abs(np.mean(np.isclose(draws, value)) - q_exact) < _mc_tol(q_exact, p)
    assert abs(np.isnan(draws).mean() - np.isnan(null).mean()) < _mc_tol(np.isnan(null).mean(), p)


def test_nan_observed_diff_gives_nan_p_but_values():
    # Variant answers only "unknown": disambiguated score 0/0 -> NaN diff -> NaN p.
    res = _ours([[5, 0, 0], [6, 0, 0], [4, 0, 0]], BBQ_DIS)
    assert np.isnan(res.diff[0]) and np.isnan(res.p_value[0])
    assert res.value_base[0] == pytest.approx(2 * 6 / 10 - 1)


def test_concordant_only_group_has_p_one():
    res = _ours(np.diag([10, 5, 3]), BBQ)
    assert res.diff[0] == 0 and res.p_value[0] == 1.0
    assert res.ci_lo[0] == res.ci_hi[0] == 0.0


def test_large_discordant_cells_use_the_other_binomial_path():
    # Cells above the popcount limit are drawn by rng.binomial; both must give Bin(n, 1/2).
    n = st._POPCOUNT_MAX + 1000
    draws = st._half_binomials(np.array([n, 7, 70, 64]), np.random.default_rng(0), 20000)
    for col, size in enumerate([n, 7, 70, 64]):
        assert draws[:, col].mean() == pytest.approx(size / 2, abs=4 * np.sqrt(size / 4 / 20000))
        assert draws[:, col].var() == pytest.approx(size / 4, rel=0.05)
        assert 0 <= draws[:, col].min() and draws[:, col].max() <= size
    # Exact pmf for a small cell: chi-square goodness of fit against Binomial(7, 1/2).
    obs = np.bincount(draws[:, 1], minlength=8)
    assert sps.chisquare(obs, 20000 * sps.binom.pmf(np.arange(8), 7, 0.5)).pvalue > 1e-4


# ---------------------------------------------------------------------- 4. bootstrap

def test_paired_bootstrap_matches_row_resampling():
    joint = np.array([[30, 6, 4], [15, 40, 3], [2, 5, 15]])
    base, variant = _rows(joint)
    n, b = base.size, 20000
    idx = np.random.default_rng(8).integers(0, n, size=(b, n))  # resample questions
    naive = _diff_of_rows(BBQ)(base[idx], variant[idx])
    res = _ours(joint, BBQ, B=b)
    sd = naive.std(ddof=1)
    assert res.boot_sd[0] == pytest.approx(sd, rel=0.04)
    # 2.5% / 97.5% percentiles differ by ~0.03 sd of MC error each; allow ~5 SE.
    lo, hi = np.percentile(naive, [2.5, 97.5])
    assert abs(res.ci_lo[0] - lo) < 0.15 * sd and abs(res.ci_hi[0] - hi) < 0.15 * sd


def test_paired_bootstrap_matches_normal_approximation_for_rate_difference():
    # Error rate, ok=0 / wrong=1. b = 250 questions ok -> wrong, c = 150 wrong -> ok, n = 4000.
    # diff = (b - c) / n = 0.025; per-question d in {-1, 0, 1}:
    # Var(d) = (b + c) / n - diff^2 = 0.1 - 0.000625; SE = sqrt(0.099375 / 4000) = 0.0049844.
    joint = np.array([[3000, 250], [150, 600]])
    res = _ours(joint, ERR, B=20000)
    se = np.sqrt((0.1 - 0.025**2) / 4000)
    assert res.diff[0] == pytest.approx(0.025)
    assert res.boot_sd[0] == pytest.approx(se, rel=0.03)
    assert res.ci_lo[0] == pytest.approx(0.025 - 1.959964 * se, abs=0.12 * se)
    assert res.ci_hi[0] == pytest.approx(0.025 + 1.959964 * se, abs=0.12 * se)


def test_single_arm_bootstrap_vs_row_resampling_and_normal():
    counts = np.array([[30, 45, 25], [0, 0, 0]])
    value, lo, hi = st.bootstrap_ci(counts, BBQ, seeds=[1, 2], n_bootstrap=20000)
    rows = np.repeat(np.arange(3), counts[0])
    idx = np.random.default_rng(9).integers(0, rows.size, size=(20000, rows.size))
    naive = BBQ.statistic(_counts(rows[idx], 3))
    sd = naive.std()
    ref_lo, ref_hi = np.percentile(naive, [2.5, 97.5])
    assert value[0] == pytest.approx(0.7 * (2 * 45 / 70 - 1))  # (1 - 30/100) * (90/70 - 1)
    assert abs(lo[0] - ref_lo) < 0.15 * sd and abs(hi[0] - ref_hi) < 0.15 * sd
    assert np.isnan([value[1], lo[1], hi[1]]).all()  # empty group
    # Rate p = 0.1 of n = 1000: normal interval 0.1 -/+ 1.96 * sqrt(0.1 * 0.9 / 1000) = 0.00949.
    v, lo, hi = st.bootstrap_ci([[900, 100]], ERR, seeds=[3], n_bootstrap=20000, level=0.9)
    se = np.sqrt(0.09 / 1000)
    assert v[0] == pytest.approx(0.1)
    assert lo[0] == pytest.approx(0.1 - 1.644854 * se, abs=0.15 * se)
    assert hi[0] == pytest.approx(0.1 + 1.644854 * se, abs=0.15 * se)


# --------------------------------------------------------------------------- 5. BH

def test_bh_adjust_matches_statsmodels_with_nan():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan, 0.5, 0.002, 0.04, 1.0])
    ok = ~np.isnan(p)
    expected = np.full(p.shape, np.nan)
    expected[ok] = multipletests(p[ok], method="fdr_bh")[1]  # family of 7, not 9
    np.testing.assert_allclose(st.bh_adjust(p), expected, equal_nan=True)
    grid = p.reshape(3, 3)
    np.testing.assert_allclose(st.bh_adjust(grid), expected.reshape(3, 3), equal_nan=True)
    assert np.isnan(st.bh_adjust(np.array([np.nan, np.nan]))).all()
    assert st.bh_adjust(np.array([])).shape == (0,)
    with pytest.raises(AnalysisError):
        st.bh_adjust(np.array([0.5, 1.5]))


# ------------------------------------------------------------------------ 6. Wilson

@pytest.mark.parametrize("level", [0.95, 0.9, 0.99])
def test_wilson_matches_statsmodels(level):
    from statsmodels.stats.proportion import proportion_confint

    k, n = np.array([0, 1, 5, 10, 37, 3]), np.array([10, 10, 10, 10, 50, 1000])
    lo, hi = st.wilson_interval(k, n, level)
    ref_lo, ref_hi = proportion_confint(k, n, alpha=1 - level, method="wilson")
    np.testing.assert_allclose(lo, ref_lo, atol=1e-12)
    np.testing.assert_allclose(hi, ref_hi, atol=1e-12)


def test_wilson_empty_is_nan():
    lo, hi = st.wilson_interval(np.array([0, 2]), np.array([0, 4]))
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and 0 < lo[1] < 0.5 < hi[1] < 1


# -------------------------------------------------------------------- 7. statistics

def test_rate_of_by_hand():
    # [7 ok, 3 wrong]: 3 / 10 = 0.3; [4, 1]: 0.2; empty: NaN.
    np.testing.assert_allclose(st.rate_of(1)(np.array([[7, 3], [4, 1], [0, 0]])), [0.3, 0.2, np.nan])
    assert st.rate_of(0)(np.array([7, 3])) == pytest.approx(0.7)


def test_bbq_scores_by_hand():
    c = np.array([[2, 6, 2], [5, 0, 0], [0, 0, 0], [4, 1, 5]])
    # [2,6,2]: s_dis = 2*6/8 - 1 = 0.5; acc = 2/10 -> s_amb = 0.8 * 0.5 = 0.4.
    # [5,0,0]: s_dis = 0/0 -> NaN; s_amb: acc = 1, so (1 - 1) * bounded = 0.
    # [4,1,5]: s_dis = 2*1/6 - 1 = -2/3; s_amb = 0.6 * -2/3 = -0.4.
    np.testing.assert_allclose(st.bbq_disambig_score(c), [0.5, np.nan, np.nan, -2 / 3])
    np.testing.assert_allclose(st.bbq_ambig_score(c), [0.4, 0.0, np.nan, -0.4])


def test_stereoset_by_hand():
    c = np.array([[6, 2, 2], [0, 0, 4], [3, 3, 0], [1, 3, 4]])
    parts = st.stereoset_parts(c)
    # [6,2,2]: lms = 8/10 = 0.8, ss = 6/8 = 0.75, icat = 100*0.8*(1 - 0.25/0.5) = 40.
    # [0,0,4]: lms = 0, ss = 0/0 NaN, icat = 0.  [3,3,0]: lms 1, ss 0.5, icat 100.
    # [1,3,4]: lms = 4/8 = 0.5, ss = 1/4, icat = 100*0.5*(1 - 0.25/0.5) = 25.
    np.testing.assert_allclose(parts["lms"], [0.8, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(parts["ss"], [0.75, np.nan, 0.5, 0.25])
    np.testing.assert_allclose(parts["icat"], [40.0, 0.0, 100.0, 25.0])
    np.testing.assert_allclose(st.stereoset_score(c), [0.6, 1.0, 0.0, 0.75])
    assert np.isnan(st.stereoset_score(np.array([0, 0, 0])))


def test_iat_by_hand():
    # [3, 7]: |0.5 - 0.7| / 0.5 = 0.4; [5, 5]: 0; [10, 0]: 1; [0, 0]: NaN.
    np.testing.assert_allclose(st.iat_score(np.array([[3, 7], [5, 5], [10, 0], [0, 0]])),
                               [0.4, 0.0, 1.0, np.nan])


def _eod_counts(table):
    """{(g, y): (yhat=0, yhat=1)} -> flat counts indexed (g * 2 + y) * 2 + yhat."""
    n_groups = 1 + max(g for g, _ in table)
    c = np.zeros(4 * n_groups, dtype=np.int64)
    for (g, y), (n0, n1) in table.items():
        c[(g * 2 + y) * 2], c[(g * 2 + y) * 2 + 1] = n0, n1
    return c


def test_equalized_odds_by_hand():
    # g0: FPR = 2/10 = 0.2, TPR = 7/10 = 0.7; g1: FPR = 5/10 = 0.5, TPR = 9/10 = 0.9.
    # TPR gap 0.2, FPR gap 0.3 -> 0.3.
    c = _eod_counts({(0, 0): (8, 2), (0, 1): (3, 7), (1, 0): (5, 5), (1, 1): (1, 9)})
    assert st.equalized_odds_difference(c, 2) == pytest.approx(0.3)
    # g2 has no y=1 rows: ignored for TPR (gap stays 0.2); its FPR 1/4 is inside [0.2, 0.5].
    c3 = np.concatenate([c, _eod_counts({(0, 0): (3, 1), (0, 1): (0, 0)})])
    assert st.equalized_odds_difference(c3, 3) == pytest.approx(0.3)
    # One group only: no gap is defined.
    assert np.isnan(st.equalized_odds_difference(c[:4], 1))
    # Vectorized over leading axes.
    np.testing.assert_allclose(st.equalized_odds_difference(np.stack([c, c]), 2), [0.3, 0.3])
    with pytest.raises(AnalysisError):
        st.equalized_odds_difference(c, 3)


def test_equalized_odds_matches_fairlearn():
    from fairlearn.metrics import equalized_odds_difference

    rng = np.random.default_rng(2)
    for _ in range(5):
        c = rng.integers(1, 30, size=12)  # 3 groups, every (g, y) present
        g, y, yhat = np.unravel_index(np.repeat(np.arange(12), c), (3, 2, 2))
        ref = equalized_odds_difference(y, yhat, sensitive_features=g)
        assert st.equalized_odds_difference(c, 3) == pytest.approx(ref)


# ------------------------------------------------------------------------ 8. McNemar

def test_mcnemar_matches_statsmodels():
    from statsmodels.stats.contingency_tables import mcnemar

    b = np.array([0, 3, 10, 1, 25, 0])
    c = np.array([0, 9, 10, 0, 12, 4])
    ref = [mcnemar([[50, bi], [ci, 40]], exact=True).pvalue for bi, ci in zip(b, c)]
    np.testing.assert_allclose(st.mcnemar_exact(b, c), ref, rtol=1e-10)
    assert st.mcnemar_exact(b, c)[0] == 1.0


# -------------------------------------------------------------------- 9. seeds, min_n

def _groups(g=40, k=3, n=60, seed=0):
    rng = np.random.default_rng(seed)
    p = np.full(k * k, 0.5 / (k * k - k))
    p[np.arange(k) * (k + 1)] = 0.5 / k
    return rng.multinomial(n, p, size=g).reshape(g, k, k)


def _same(a, b):
    for field in ("n", "value_base", "value_variant", "diff", "p_value", "ci_lo", "ci_hi", "boot_sd"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_same_seeds_same_results_and_threads_do_not_matter():
    joint = _groups()
    seeds = [st.seed_for(42, "bbq", i) for i in range(len(joint))]
    first = st.paired_count_tests(joint, BBQ, seeds=seeds)
    _same(first, st.paired_count_tests(joint, BBQ, seeds=seeds))
    _same(first, st.paired_count_tests(joint, BBQ, seeds=seeds, workers=1))
    _same(first, st.paired_count_tests(joint, BBQ, seeds=seeds, workers=3))
    other = st.paired_count_tests(joint, BBQ, seeds=[s + 1 for s in seeds])
    assert not np.array_equal(first.p_value, other.p_value)


def test_group_result_independent_of_other_groups():
    joint = _groups()
    seeds = [st.seed_for(1, i) for i in range(len(joint))]
    full = st.paired_count_tests(joint, BBQ, seeds=seeds)
    order = [7, 3]
    part = st.paired_count_tests(joint[order], BBQ, seeds=[seeds[i] for i in order])
    for field in ("p_value", "ci_lo", "ci_hi", "boot_sd", "diff"):
        np.testing.assert_array_equal(getattr(part, field), getattr(full, field)[order])
    v_full = st.bootstrap_ci(joint.sum(axis=2), BBQ, seeds=seeds)
    v_part = st.bootstrap_ci(joint[order].sum(axis=2), BBQ, seeds=[seeds[i] for i in order])
    for a, b in zip(v_part, v_full):
        np.testing.assert_array_equal(a, b[order])


def test_small_groups_are_not_tested_but_have_values():
    joint = np.array([[[2, 1, 0], [0, 1, 0], [0, 0, 1]], [[20, 5, 1], [2, 10, 3], [1, 1, 7]]])
    res = st.paired_count_tests(joint, BBQ, seeds=[1, 2], min_n=10)
    assert res.n.tolist() == [5, 50]
    assert np.isnan([res.p_value[0], res.ci_lo[0], res.ci_hi[0], res.boot_sd[0]]).all()
    # Group 0: base [3, 1, 1] -> 0.4 * (2*1/2 - 1) = 0; variant [2, 2, 1] -> 0.6 * (4/3 - 1) = 0.2.
    assert res.value_base[0] == pytest.approx(0.0) and res.diff[0] == pytest.approx(0.2)
    assert np.isfinite([res.p_value[1], res.ci_lo[1], res.ci_hi[1], res.boot_sd[1]]).all()
    assert res.ci_lo[1] <= res.diff[1] <= res.ci_hi[1]


def test_seed_for_is_stable_across_processes():
    code = ("from ray_bench.analysis.stats import seed_for;"
            "print(seed_for(3, 'bbq', 'age', ('m', 1)))")
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": h}).stdout.strip()
        for h in ("0", "1", "12345")
    }
    assert len(outs) == 1
    seed = int(outs.pop())
    assert seed == st.seed_for(3, "bbq", "age", ("m", 1))
    assert 0 <= seed < 2**63
    assert len({st.seed_for(3, "bbq", i) for i in range(1000)} | {st.seed_for(4, "bbq", 0)}) == 1001


# ---------------------------------------------------------------- input validation

@pytest.mark.parametrize("joint, seeds", [
    (np.zeros((2, 3, 3), dtype=int), [1]),          # one seed for two groups
    (np.zeros((2, 2, 2), dtype=int), [1, 2]),       # K does not match the metric
    (np.zeros((3, 3), dtype=int), [1]),             # missing group axis
    (-np.ones((1, 3, 3), dtype=int), [1]),          # negative counts
    (np.full((1, 3, 3), 0.5), [1]),                 # not counts
])
def test_bad_inputs_raise_analysis_error(joint, seeds):
    with pytest.raises(AnalysisError) as err:
        st.paired_count_tests(joint, BBQ, seeds=seeds)
    assert err.value.hint


def test_bad_settings_raise_analysis_error():
    with pytest.raises(AnalysisError):
        st.paired_count_tests(_groups(2), BBQ, seeds=[1, 2], level=1.5)
    with pytest.raises(AnalysisError):
        st.bootstrap_ci(np.ones((1, 2), dtype=int), BBQ, seeds=[1])
    with pytest.raises(AnalysisError):
        st.bootstrap_ci(np.ones((1, 3), dtype=int), BBQ, seeds=[1], n_bootstrap=1)


# ------------------------------------------------------------------- 10. full size

def test_3000_group_call_runs():
    joint = _groups(3000, n=120, seed=5)
    res = st.paired_count_tests(joint, BBQ, seeds=[st.seed_for(0, i) for i in range(3000)])
    assert res.p_value.shape == (3000,)
    assert np.all((res.p_value > 0) & (res.p_value <= 1))
    assert np.all(res.ci_lo <= res.ci_hi)
    # Under this H0-like generator about 5% of the groups reject at 0.05.
    assert 0.02 < np.mean(res.p_value < 0.05) < 0.09


def test_sixteen_categories_work():
    # Equalized odds over 4 sensitive groups: K = 16 categories.
    metric = st.CountMetric("eod", 16, lambda c: st.equalized_odds_difference(c, 4))
    joint = _groups(5, k=16, n=800, seed=6)
    res = st.paired_count_tests(joint, metric, seeds=range(5), n_permutations=200, n_bootstrap=200)
    assert np.isfinite(res.p_value).all() and np.isfinite(res.ci_lo).all()


def test_holm_matches_statsmodels_and_keeps_nan():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, np.nan, 0.03, 0.2, 0.001])
    ok = ~np.isnan(p)
    ours = st.holm_adjust(p)
    np.testing.assert_allclose(ours[ok], multipletests(p[ok], method="holm")[1])
    assert np.isnan(ours[2])
