"""The gap between a model's category shares and a reference distribution (notes: audits-and-exports.md 4.2).

For one occupation: ``n`` answers mapped to K categories (counts ``c``, ``N = sum c``; answers
without a category are counted apart and never enter ``p``), observed shares ``p = c / N`` and
reference shares ``q``:

* **TV** (primary): ``0.5 * sum |p - q|`` in [0, 1], the largest difference in probability
  any set of categories can have under the two distributions.
* **max deviation**: ``max |p - q|`` (PreciseDebias' stopping criterion: every ``|bias_k|`` <= 0.02).
* **JS**: Jensen-Shannon *divergence* (not the distance) in nats,
  ``0.5 KL(p || m) + 0.5 KL(q || m)``, ``m = (p + q) / 2``, in [0, ln 2]; equals
  ``scipy.spatial.distance.jensenshannon(p, q) ** 2`` (SciPy returns the distance, base e).
* **signed gaps** ``p - q`` and ratios ``p / q`` per category.
* **G-test** (likelihood-ratio goodness of fit, Sokal & Rohlf, *Biometry*, 3rd ed. 1995, ch.
  17): ``G = 2 sum c ln(c / (N q))`` ~ chi-squared with K' - 1 df (K' categories with q > 0),
  via ``scipy.stats.power_divergence(lambda_="log-likelihood")``. A category with ``q = 0``
  but ``c > 0`` makes the reference impossible: ``G = inf``, ``p = 0``; ``q = 0, c = 0`` drops
  the category. Because ``N q`` is often below 5 here, a Monte Carlo p-value from the same
  null draws as the noise floor is reported too (``(1 + #{G* >= G}) / (1 + R)``, Phipson &
  Smyth 2010).

**Noise floor.** Even a model that samples exactly from ``q`` shows ``TV > 0`` at finite N:
``E|p_k - q_k| ~ sqrt(2 q_k (1 - q_k) / (pi N))`` (normal approximation), so a TV is
meaningful only above the distribution of ``TV(Multinomial(N, q) / N, q)``, simulated here
(seeded) and summarized by its mean and 95th percentile (:func:`noise_floor`).

**Intervals.** ``bootstrap``: percentile interval of TV over multinomial resamples of the n
answers, uncategorized ones included (N varies; Efron & Tibshirani 1993, ch. 13).
``dirichlet``: equal-tailed interval of TV(p*, q) with p* drawn from the Jeffreys posterior
Dirichlet(c + 1/2) (Gelman et al., *Bayesian Data Analysis*, 3rd ed., 2013, 3.4). Neither can
cover a true TV of 0 (TV is positive for every p* != q): compare with the floor there.

**Paired comparison** (base vs variant on the same questions, sample k of both sharing the
question id and hence the sampling seed): ``diff = TV(variant) - TV(base)`` with the matched-
pairs swap permutation test and the paired bootstrap of :mod:`ray_bench.analysis.stats`, on the
(K+1) x (K+1) joint counts (the extra category holds every answer without a category).

Pure NumPy/SciPy, no I/O. Each group's randomness comes from its own seed
(:func:`ray_bench.analysis.stats.seed_for`), so its result does not depend on the other groups.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ray_bench.analysis.stats import CountMetric, permutation_null
from ray_bench.errors import AnalysisError

CI_METHODS = ("bootstrap", "dirichlet")


# ----------------------------------------------------------------------------- distances

def proportions(counts: np.ndarray) -> np.ndarray:
    """``counts / counts.sum(-1)``; NaN where a row has no count."""
    c = np.asarray(counts, dtype=float)
    n = c.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, c / np.where(n > 0, n, 1.0), np.nan)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``0.5 * sum_k |p_k - q_k|`` over the last axis (broadcasts)."""
    return 0.5 * np.abs(np.asarray(p, dtype=float) - np.asarray(q, dtype=float)).sum(axis=-1)


def max_deviation(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(max_k |p_k - q_k|, argmax_k)`` over the last axis (argmax -1 where p is NaN)."""
    dev = np.abs(np.asarray(p, dtype=float) - np.asarray(q, dtype=float))
    undefined = np.isnan(dev).any(axis=-1)
    filled = np.where(np.isnan(dev), -1.0, dev)
    return np.where(undefined, np.nan, filled.max(axis=-1)), np.where(undefined, -1, filled.argmax(axis=-1))


def _xlogy_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a * ln(a / b)`` with ``0 ln 0 = 0`` (b > 0 wherever a > 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0) / np.where(b > 0, b, 1.0)), 0.0)


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in nats over the last axis (= SciPy's ``jensenshannon(p, q) ** 2``)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    m = 0.5 * (p + q)
    return 0.5 * _xlogy_ratio(p, m).sum(axis=-1) + 0.5 * _xlogy_ratio(q, m).sum(axis=-1)


def signed_gaps(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p - q, p / q)``; the ratio is inf where ``q = 0 < p`` and NaN where both are 0."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return p - q, p / q


# ----------------------------------------------------------------------------- G-test

@dataclass(frozen=True)
class GTest:
    """Likelihood-ratio goodness-of-fit test of counts against reference shares."""

    statistic: float
    df: int
    p_value: float


def g_statistic(counts: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``2 sum c ln(c / (N q))`` over the last axis; inf where some ``q = 0 < c``, NaN where N = 0."""
    c = np.asarray(counts, dtype=float)
    q = np.asarray(q, dtype=float)
    n = c.sum(axis=-1, keepdims=True)
    g = 2.0 * _xlogy_ratio(c, n * q).sum(axis=-1)
    impossible = ((q == 0) & (c > 0)).any(axis=-1)
    return np.where(n[..., 0] == 0, np.nan, np.where(impossible, np.inf, g))


def g_test(counts: np.ndarray, q: np.ndarray) -> GTest:
    """G-test of one count vector (see the module docstring for zero reference shares)."""
    from scipy.stats import power_divergence

    c, q = np.asarray(counts, dtype=float), np.asarray(q, dtype=float)
    n = c.sum()
    if n == 0:
        return GTest(float("nan"), 0, float("nan"))
    if ((q == 0) & (c > 0)).any():
        return GTest(float("inf"), int((q > 0).sum()) - 1, 0.0)
    keep = q > 0
    df = int(keep.sum()) - 1
    if df == 0:  # one possible category and every answer in it
        return GTest(0.0, 0, 1.0)
    stat, p = power_divergence(c[keep], f_exp=n * q[keep], lambda_="log-likelihood")
    return GTest(float(stat), df, float(p))


# ----------------------------------------------------------------------------- noise floor

@dataclass(frozen=True)
class NoiseFloor:
    """TV between ``Multinomial(n, q) / n`` and ``q``: its simulated mean, 95th percentile and SD.

    ``g_null`` holds the G statistics of the same draws (for Monte Carlo p-values).
    """

    n: int
    draws: int
    mean: float
    q95: float
    sd: float
    g_null: np.ndarray


def noise_floor(q: np.ndarray, n: int, *, draws: int = 10_000, seed: int = 0) -> NoiseFloor:
    """Simulate the TV of ``draws`` samples of size ``n`` drawn from the reference ``q`` itself.

    Raises:
        AnalysisError: ``n`` or ``draws`` below 1, or ``q`` is not a distribution.
    """
    q = np.asarray(q, dtype=float)
    if n < 1 or draws < 1:
        raise AnalysisError(f"the noise floor needs n >= 1 and draws >= 1, got n={n}, draws={draws}",
                            hint="Pass the number of categorized answers and a positive number of draws.")
    if q.ndim != 1 or (q < 0).any() or abs(q.sum() - 1.0) > 1e-9:
        raise AnalysisError(f"reference shares must be a distribution, got {q.tolist()}",
                            hint="Pass ReferenceTable.shares(attribute)[row].")
    counts = np.random.default_rng(seed).multinomial(n, q, size=draws)
    tv = total_variation(counts / n, q)
    sd = float(tv.std(ddof=1)) if draws > 1 else 0.0
    return NoiseFloor(n, draws, float(tv.mean()), float(np.quantile(tv, 0.95)), sd, g_statistic(counts, q))


def approximate_floor(q: np.ndarray, n: int) -> float:
    """Normal approximation of the floor's mean, ``0.5 sum sqrt(2 q (1 - q) / (pi n))`` (notes 4.2)."""
    q = np.asarray(q, dtype=float)
    return float(0.5 * np.sqrt(2.0 * q * (1.0 - q) / (np.pi * n)).sum())


def monte_carlo_p(g_obs: float, g_null: np.ndarray) -> float:
    """``(1 + #{G* >= G}) / (1 + R)``; NaN for a NaN statistic, ``1 / (1 + R)`` for an infinite one."""
    if np.isnan(g_obs):
        return float("nan")
    return float((1 + np.count_nonzero(g_null >= g_obs - 1e-9)) / (1 + g_null.size))


# ----------------------------------------------------------------------------- intervals

def tv_metric(q: np.ndarray) -> CountMetric:
    """TV to ``q`` as a :class:`CountMetric` of K+1 counts (the last one: answers without a category)."""
    q = np.asarray(q, dtype=float)

    def statistic(counts: np.ndarray) -> np.ndarray:
        return total_variation(proportions(np.asarray(counts)[..., :-1]), q)

    return CountMetric(name="tv", n_categories=q.size + 1, statistic=statistic)


def tv_interval(counts: np.ndarray, q: np.ndarray, *, method: str = "bootstrap", draws: int = 1000,
                level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Interval of TV for one model and occupation; ``counts`` has K+1 entries (last: uncategorized).

    Raises:
        AnalysisError: unknown method or bad settings.
    """
    if method not in CI_METHODS:
        raise AnalysisError(f"unknown interval method {method!r}", hint=f"Use one of: {', '.join(CI_METHODS)}.")
    if draws < 2 or not 0.0 < level < 1.0:
        raise AnalysisError(f"bad interval settings: {draws} draws, level={level}",
                            hint="Use at least 2 draws and 0 < level < 1.")
    counts = np.asarray(counts, dtype=np.int64)
    q = np.asarray(q, dtype=float)
    rng = np.random.default_rng(seed)
    if counts[:-1].sum() == 0:
        return float("nan"), float("nan")
    if method == "bootstrap":
        resampled = rng.multinomial(int(counts.sum()), counts / counts.sum(), size=draws)
        tv = total_variation(proportions(resampled[:, :-1]), q)
    else:
        tv = total_variation(rng.dirichlet(counts[:-1] + 0.5, size=draws), q)
    tail = 50.0 * (1.0 - level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every resample without a categorized answer
        lo, hi = np.nanpercentile(tv, [tail, 100.0 - tail])
    return float(lo), float(hi)


def paired_tv_draws(joint: np.ndarray, q: np.ndarray, *, n_permutations: int = 1000, n_bootstrap: int = 1000,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Null and bootstrap draws of ``TV(variant) - TV(base)`` for one occupation.

    Args:
        joint: ``[K+1, K+1]`` counts of (base outcome, variant outcome) per shared question;
            index K is "no category" (unparsed, unmatched or an error).
        q: The K reference shares.

    Returns:
        ``(null[P], boot[B])``: the matched-pairs swap permutation null
        (:func:`ray_bench.analysis.stats.permutation_null`) and the paired bootstrap
        (Multinomial(n, joint / n) over the cells); NaN where a draw leaves a side without
        categorized answers.
    """
    joint = np.asarray(joint, dtype=np.int64)
    metric = tv_metric(q)
    rng = np.random.default_rng(seed)  # permutations first, then the bootstrap
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        null = permutation_null(joint, metric, rng, n_permutations)
        n = int(joint.sum())
        cells = rng.multinomial(n, joint.ravel() / n, size=n_bootstrap).reshape(n_bootstrap, *joint.shape)
        boot = metric.statistic(cells.sum(axis=1)) - metric.statistic(cells.sum(axis=2))
    return null, boot


def two_sided_p(observed: float, null: np.ndarray) -> float:
    """``(1 + #{|d*| >= |d|}) / (1 + P)`` (NaN draws count as not extreme; NaN for a NaN ``d``)."""
    if np.isnan(observed):
        return float("nan")
    extreme = np.count_nonzero(np.abs(null) >= abs(observed) - 1e-12)
    return float((1 + extreme) / (1 + null.size))


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the defined (non-NaN) draws; NaN when none is."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return float("nan"), float("nan")
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(draws, [tail, 100.0 - tail])
    return float(lo), float(hi)


# ----------------------------------------------------------------------------- aggregation

@dataclass(frozen=True)
class Aggregate:
    """TV over occupations: unweighted mean, employment-weighted mean, and the worst occupation."""

    n: int
    mean: float
    weighted: float
    worst: float
    worst_index: int


def aggregate(values: np.ndarray, weights: np.ndarray | None = None) -> Aggregate:
    """Mean, weighted mean (NaN without weights) and max over the defined values (``worst_index`` -1 if none)."""
    v = np.asarray(values, dtype=float)
    ok = ~np.isnan(v)
    if not ok.any():
        return Aggregate(0, float("nan"), float("nan"), float("nan"), -1)
    weighted = float("nan")
    if weights is not None:
        w = np.asarray(weights, dtype=float)[ok]
        weighted = float((w * v[ok]).sum() / w.sum())
    worst = int(np.flatnonzero(ok)[np.argmax(v[ok])])
    return Aggregate(int(ok.sum()), float(v[ok].mean()), weighted, float(v[worst]), worst)


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of per-occupation differences (Wilcoxon 1945).

    Zero differences are dropped (``zero_method="wilcox"``); 1.0 when every difference is 0,
    NaN without a defined difference.
    """
    from scipy.stats import wilcoxon

    d = np.asarray(diffs, dtype=float)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return float("nan")
    if np.all(d == 0):
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox").pvalue)
