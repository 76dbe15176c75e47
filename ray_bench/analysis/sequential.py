"""Anytime-valid sequential tests by betting for paired per-question scores (notes: audits-and-exports.md 2.6).

Data: for each question i, in a random order fixed by a seed, a pair ``(a_i, b_i)`` in
``[0, 1]^2`` and the paired difference ``D_i = a_i - b_i`` in ``[-1, 1]`` (in ray-bench:
``D = variant - base``). The pairs are assumed exchangeable across questions (a random
order provides it); nothing is assumed about the dependence within a pair or the
distribution of ``D``.

* **A. Mean-difference test by betting** (Waudby-Smith & Ramdas, "Estimating means of
  bounded random variables by betting", JRSS-B 2023; the one-sided form as in Chugg et
  al. 2023). With ``mu = E[D]`` and tolerance ``eps >= 0``:
  one-sided ``H0+: mu <= eps`` (``alternative="greater"``), ``H0-: mu >= -eps``
  (``"less"``), two-sided ``H0: |mu| <= eps``. Wealth
  ``K+_t = prod_{i<=t} (1 + lam+_i (D_i - eps))``, ``K-_t = prod (1 + lam-_i (-D_i - eps))``,
  ``K_t = (K+_t + K-_t) / 2`` with predictable bets ``lam_i`` in ``[0, c / (1 + eps)]``,
  ``c = 1/2``. Each is a nonnegative supermartingale under its null, so by Ville's
  inequality ``P(exists t: K_t >= 1/alpha) <= alpha``. Reject at ``tau = inf{t: K_t >= 1/alpha}``;
  the anytime-valid p-value is ``p_t = min(1, 1 / max_{s<=t} K_s)``.
  Bets: a *mixture* of constant bets ``lam_j = (c / (1 + eps)) j / J``, ``j = 1..J``
  (``K = mean_j prod_i (1 + lam_j g_i)``, regret <= log J against the best grid bet), or
  *ONS* (online Newton step, Cutkosky & Orabona 2018, as used by Shekhar & Ramdas 2023):
  ``lam_1 = 0, A_0 = 1``; ``z_i = g_i / (1 + lam_i g_i)``, ``A_i = A_{i-1} + z_i^2``,
  ``lam_{i+1} = clip(lam_i + (2 / (2 - ln 3)) z_i / A_i, 0, c / (1 + eps))``.
* **Confidence sequence** for ``mu`` by inverting the test over a grid of means ``m``:
  ``CS_t = {m : K+_t(m) < 2/alpha and K-_t(m) < 2/alpha}`` with ``g = +-(D - m)``, valid
  simultaneously over ``t`` (reported as a running intersection).
* **B. KS-witness distribution test** (Shekhar & Ramdas, "Nonparametric two-sample testing
  by betting", IEEE Trans. Inf. Theory 2023, with the neural witness replaced by a 1-D KS
  threshold). ``H0(eps): TV(P_a, P_b) <= eps`` on the score marginals. At step t, from the
  past pairs only: ``c_t = argmax_c |F_a(c) - F_b(c)|`` over a fixed grid,
  ``s_t = sign(F_b(c_t) - F_a(c_t))``, ``f_t(x) = 1{x > c_t}``; payoff
  ``g_t = s_t (f_t(a_t) - f_t(b_t)) - eps``; no betting for a warm-up.
* **e-BH** (Wang & Ramdas, "False discovery rate control with e-values", JRSS-B 2022):
  reject the ``k*`` largest e-values, ``k* = max{k : e_(k) >= m / (alpha k)}``; FDR <= alpha
  under arbitrary dependence.

Pure NumPy, no I/O; vectorized over leading axes (replications), so a simulation of R
sequences is one call. Randomness only in :func:`permutation_order` (seeded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ray_bench.errors import AnalysisError

__all__ = [
    "ALTERNATIVES", "METHODS", "BettingTestResult", "ConfidenceSequence", "log_wealth_mixture", "log_wealth_ons",
    "mean_log_wealth", "mean_shift_test", "confidence_sequence", "ks_payoffs", "ks_witness_test", "e_bh",
    "permutation_order",
]

Alternative = Literal["two-sided", "greater", "less"]
Method = Literal["mixture", "ons"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")
METHODS: tuple[str, ...] = ("mixture", "ons")
#: Bet cap ``c`` of the notes (any c < 1 keeps every wealth factor >= 1 - c > 0).
DEFAULT_CAP = 0.5
#: Grid size ``J`` of the mixture of constant bets.
DEFAULT_GRID = 20
_ONS_RATE = 2.0 / (2.0 - np.log(3.0))


@dataclass(frozen=True)
class ConfidenceSequence:
    """Running-intersection confidence sequence for ``E[D]``: ``lo[t-1] <= mu <= hi[t-1]`` for all t w.p. >= 1 - alpha.

    ``lo``/``hi`` have length n (after 1, 2, ..., n pairs); the grid resolution ``step`` is
    already added on both sides (conservative). An empty set (possible only through the
    grid) is reported as the last non-empty interval.
    """

    lo: np.ndarray
    hi: np.ndarray
    step: float

    @property
    def final(self) -> tuple[float, float]:
        """The interval after every pair."""
        return float(self.lo[-1]), float(self.hi[-1])


@dataclass(frozen=True)
class BettingTestResult:
    """One sequential test by betting over ``n`` pairs.

    Attributes:
        test: ``"mean"`` (:func:`mean_shift_test`) or ``"ks"`` (:func:`ks_witness_test`).
        method: ``"mixture"`` or ``"ons"``.
        alternative: ``"two-sided"``, ``"greater"`` or ``"less"`` (``"ks"``: always two-sided).
        alpha, epsilon: Level and tolerance.
        n: Pairs available.
        log_wealth: ``log K_t`` for t = 1..n (the e-process).
        stop: Pairs needed to reject (``tau``, 1-based), ``None`` when ``K_t`` never reached ``1/alpha``.
        e_value: ``K_tau`` when rejected, else ``K_n`` (an e-value: optional stopping of a supermartingale).
        p_value: Anytime-valid p-value after all n pairs, ``min(1, 1 / max_{t<=n} K_t)``.
        mean: Mean of ``D`` over the n pairs (NaN for ``"ks"``).
        cs: Confidence sequence for ``E[D]`` (``None`` unless requested / for ``"ks"``).
    """

    test: str
    method: str
    alternative: str
    alpha: float
    epsilon: float
    n: int
    log_wealth: np.ndarray
    stop: int | None
    e_value: float
    p_value: float
    mean: float
    cs: ConfidenceSequence | None = None

    @property
    def reject(self) -> bool:
        """Whether the null was rejected (some ``K_t >= 1/alpha``)."""
        return self.stop is not None

    @property
    def p_values(self) -> np.ndarray:
        """The anytime p-value trajectory ``p_t``, t = 1..n."""
        return np.minimum(1.0, np.exp(-np.maximum.accumulate(self.log_wealth)))

    def to_dict(self) -> dict:
        """JSON-ready summary (no trajectories)."""
        out = {
            "test": self.test, "method": self.method, "alternative": self.alternative, "alpha": self.alpha,
            "epsilon": self.epsilon, "n": self.n, "reject": self.reject, "stop": self.stop,
            "e_value": self.e_value, "p_value": self.p_value, "mean": None if np.isnan(self.mean) else self.mean,
        }
        if self.cs is not None:
            out["cs_lo"], out["cs_hi"] = self.cs.final
        return out


# ----------------------------------------------------------------------------- wealth

def _check_payoffs(g: np.ndarray, lam_max: np.ndarray | float) -> None:
    if np.any(np.isnan(g)):
        raise AnalysisError("payoffs contain NaN: drop unpaired questions before testing")
    worst = np.min(np.asarray(lam_max) * np.min(g, axis=-1, initial=0.0))
    if worst <= -1.0:
        raise AnalysisError(f"a bet of {np.max(lam_max)} can lose everything on these payoffs: lower the bet cap")


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(x - top), axis=axis))


def log_wealth_mixture(g: np.ndarray, lam_max: float | np.ndarray, n_grid: int = DEFAULT_GRID) -> np.ndarray:
    """``log K_t`` of the mixture of constant bets ``lam_j = lam_max j / J`` (Waudby-Smith & Ramdas 2023).

    ``K_t = (1/J) sum_j prod_{i<=t} (1 + lam_j g_i)``, computed as a log-sum-exp of
    ``cumsum(log1p(lam_j g_i))``.

    Args:
        g: Payoffs, shape ``(..., n)``.
        lam_max: Bet cap, a scalar or broadcastable to ``g.shape[:-1]``; ``lam_max * min(g) > -1`` is required.
        n_grid: ``J``.

    Returns:
        ``log K_t``, shape of ``g``.
    """
    g = np.asarray(g, dtype=float)
    lam_max = np.asarray(lam_max, dtype=float)
    _check_payoffs(g, lam_max)
    lam = lam_max[..., None] * (np.arange(1, n_grid + 1) / n_grid)  # (..., J)
    logs = np.cumsum(np.log1p(lam[..., :, None] * g[..., None, :]), axis=-1)  # (..., J, n)
    return _logsumexp(logs, axis=-2) - np.log(n_grid)


def log_wealth_ons(g: np.ndarray, lam_max: float | np.ndarray) -> np.ndarray:
    """``log K_t`` of ONS betting (online Newton step; Cutkosky & Orabona 2018, Shekhar & Ramdas 2023).

    ``lam_1 = 0``, ``A_0 = 1``; after ``g_i``: ``z_i = g_i / (1 + lam_i g_i)``,
    ``A_i = A_{i-1} + z_i^2``, ``lam_{i+1} = clip(lam_i + (2/(2 - ln 3)) z_i / A_i, 0, lam_max)``.
    ``lam_i`` depends on ``g_1..g_{i-1}`` only (predictable). Loops over t, vectorized over
    the leading axes of ``g``.
    """
    g = np.asarray(g, dtype=float)
    lam_max = np.broadcast_to(np.asarray(lam_max, dtype=float), g.shape[:-1])
    _check_payoffs(g, lam_max)
    lam = np.zeros(g.shape[:-1])
    big_a = np.ones(g.shape[:-1])
    steps = np.empty_like(g)
    for t in range(g.shape[-1]):
        gt = g[..., t]
        factor = 1.0 + lam * gt
        steps[..., t] = np.log(factor)
        z = gt / factor
        big_a = big_a + z * z
        lam = np.clip(lam + _ONS_RATE * z / big_a, 0.0, lam_max)
    return np.cumsum(steps, axis=-1)


def _log_wealth(g: np.ndarray, lam_max: float | np.ndarray, method: str, n_grid: int) -> np.ndarray:
    if method == "mixture":
        return log_wealth_mixture(g, lam_max, n_grid)
    if method == "ons":
        return log_wealth_ons(g, lam_max)
    raise AnalysisError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def _check_args(alpha: float, epsilon: float, alternative: str, cap: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 <= epsilon < 1.0:
        raise AnalysisError(f"epsilon must be in [0, 1), got {epsilon}")
    if alternative not in ALTERNATIVES:
        raise AnalysisError(f"alternative must be one of {', '.join(ALTERNATIVES)}, got {alternative!r}")
    if not 0.0 < cap < 1.0:
        raise AnalysisError(f"the bet cap c must be in (0, 1), got {cap}")


def _differences(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d, dtype=float)
    if d.shape[-1:] == (0,) or d.ndim == 0:
        raise AnalysisError("no paired differences to test")
    if np.any(np.isnan(d)):
        raise AnalysisError("paired differences contain NaN: drop unpaired questions before testing")
    if np.any(np.abs(d) > 1.0 + 1e-12):
        raise AnalysisError("paired differences must lie in [-1, 1] (differences of scores in [0, 1])")
    return np.clip(d, -1.0, 1.0)


def mean_log_wealth(
    d: np.ndarray, *, epsilon: float = 0.0, alternative: str = "two-sided", method: str = "mixture",
    cap: float = DEFAULT_CAP, n_grid: int = DEFAULT_GRID,
) -> np.ndarray:
    """``log K_t`` of the mean-difference test (module docstring, A), shape of ``d`` (``(..., n)``).

    ``"greater"``: ``K+`` with ``g = D - eps``; ``"less"``: ``K-`` with ``g = -D - eps``;
    ``"two-sided"``: ``log((K+ + K-) / 2)``. Bets in ``[0, cap / (1 + eps)]``.
    """
    _check_args(0.05, epsilon, alternative, cap)
    d = _differences(d)
    lam_max = cap / (1.0 + epsilon)
    parts = []
    if alternative in ("greater", "two-sided"):
        parts.append(_log_wealth(d - epsilon, lam_max, method, n_grid))
    if alternative in ("less", "two-sided"):
        parts.append(_log_wealth(-d - epsilon, lam_max, method, n_grid))
    if len(parts) == 1:
        return parts[0]
    return np.logaddexp(parts[0], parts[1]) - np.log(2.0)


def _summarize(log_k: np.ndarray, alpha: float) -> tuple[int | None, float, float]:
    crossed = np.flatnonzero(log_k >= np.log(1.0 / alpha) - 1e-12)
    stop = int(crossed[0]) + 1 if crossed.size else None
    e_value = float(np.exp(log_k[stop - 1 if stop else -1]))
    p_value = float(min(1.0, np.exp(-np.max(log_k))))
    return stop, e_value, p_value


def mean_shift_test(
    d: np.ndarray, *, alpha: float = 0.05, epsilon: float = 0.0, alternative: str = "two-sided",
    method: str = "mixture", cap: float = DEFAULT_CAP, n_grid: int = DEFAULT_GRID, with_cs: bool = True,
    cs_step: float = 0.0025,
) -> BettingTestResult:
    """Sequential paired mean-difference test by betting (Waudby-Smith & Ramdas 2023), in the given order.

    Args:
        d: Paired differences ``D_i = a_i - b_i`` in ``[-1, 1]``, 1-D, already in the (random) test order.
        alpha: Level; reject at the first t with ``K_t >= 1/alpha``.
        epsilon: Tolerance: H0 ``|mu| <= eps`` (two-sided), ``mu <= eps`` (greater), ``mu >= -eps`` (less).
        alternative: ``"two-sided"``, ``"greater"`` or ``"less"``.
        method: ``"mixture"`` (of J constant bets) or ``"ons"``.
        cap: Bet cap ``c``; bets lie in ``[0, c / (1 + eps)]``.
        n_grid: ``J`` of the mixture.
        with_cs: Also compute the confidence sequence for ``mu`` (:func:`confidence_sequence`).
        cs_step: Grid step of the confidence sequence.

    Raises:
        AnalysisError: bad arguments, NaN or out-of-range differences, or none at all.
    """
    _check_args(alpha, epsilon, alternative, cap)
    d = _differences(d)
    if d.ndim != 1:
        raise AnalysisError("mean_shift_test takes one sequence; use mean_log_wealth for many")
    log_k = mean_log_wealth(d, epsilon=epsilon, alternative=alternative, method=method, cap=cap, n_grid=n_grid)
    stop, e_value, p_value = _summarize(log_k, alpha)
    cs = confidence_sequence(d, alpha=alpha, method=method, cap=cap, n_grid=n_grid, step=cs_step) if with_cs else None
    return BettingTestResult(
        test="mean", method=method, alternative=alternative, alpha=alpha, epsilon=epsilon, n=int(d.size),
        log_wealth=log_k, stop=stop, e_value=e_value, p_value=p_value, mean=float(d.mean()), cs=cs,
    )


# ----------------------------------------------------------------------------- confidence sequence

def _cs_excluded(d: np.ndarray, m: np.ndarray, alpha: float, method: str, cap: float, n_grid: int) -> np.ndarray:
    """``(M, n)``: whether each candidate mean ``m`` is outside ``CS_t`` (either side's wealth >= 2/alpha)."""
    lam_max = cap / (1.0 + np.abs(m))  # |+-(D - m)| <= 1 + |m|, so every factor stays >= 1 - cap
    diff = d[None, :] - m[:, None]
    threshold = np.log(2.0 / alpha)
    up = _log_wealth(diff, lam_max, method, n_grid) >= threshold
    down = _log_wealth(-diff, lam_max, method, n_grid) >= threshold
    return up | down


def confidence_sequence(
    d: np.ndarray, *, alpha: float = 0.05, method: str = "mixture", cap: float = DEFAULT_CAP,
    n_grid: int = DEFAULT_GRID, step: float = 0.0025, max_cells: int = 4_000_000,
) -> ConfidenceSequence:
    """Confidence sequence for ``E[D]`` by inverting the betting test over a grid (Waudby-Smith & Ramdas 2023).

    ``CS_t = {m in grid : K+_t(m) < 2/alpha and K-_t(m) < 2/alpha}``; reported as the running
    intersection of ``[min CS_t - step, max CS_t + step]`` (clipped to [-1, 1]). Memory is
    bounded by ``max_cells`` (grid chunks).
    """
    d = _differences(d)
    grid = np.linspace(-1.0, 1.0, int(round(2.0 / step)) + 1)
    n = d.size
    per_chunk = max(1, max_cells // (n * (n_grid if method == "mixture" else 1)))
    excluded = np.concatenate([
        _cs_excluded(d, grid[i:i + per_chunk], alpha, method, cap, n_grid) for i in range(0, grid.size, per_chunk)
    ])  # (M, n)
    inside = ~excluded
    any_in = inside.any(axis=0)
    lo_idx = np.where(any_in, np.argmax(inside, axis=0), 0)
    hi_idx = np.where(any_in, grid.size - 1 - np.argmax(inside[::-1], axis=0), grid.size - 1)
    lo = np.clip(grid[lo_idx] - step, -1.0, 1.0)
    hi = np.clip(grid[hi_idx] + step, -1.0, 1.0)
    lo, hi = np.maximum.accumulate(lo), np.minimum.accumulate(hi)
    empty = lo > hi  # only through the grid: keep the last non-empty interval
    if empty.any():
        keep = np.maximum.accumulate(np.where(~empty, np.arange(n), 0))
        lo, hi = lo[keep], hi[keep]
    return ConfidenceSequence(lo=lo, hi=hi, step=step)


# ----------------------------------------------------------------------------- KS witness

def ks_payoffs(a: np.ndarray, b: np.ndarray, *, epsilon: float = 0.0, n_thresholds: int = 51, warmup: int = 20) -> np.ndarray:
    """Payoffs ``g_t`` of the KS-witness test (module docstring, B; Shekhar & Ramdas 2023), shape of ``a``.

    The witness of step t uses pairs ``1..t-1`` only: the threshold ``c_t`` of a fixed grid
    of ``n_thresholds`` points in [0, 1] (right-open at 1) maximizing ``|F_a - F_b|``, its
    orientation ``s_t = sign(F_b(c_t) - F_a(c_t))``, ``f_t = 1{x > c_t}``;
    ``g_t = s_t (f_t(a_t) - f_t(b_t)) - eps``. ``g_t = 0`` during the warm-up and while
    ``F_a = F_b`` on the grid (no bet).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.shape[-1:] == (0,):
        raise AnalysisError("a and b must be non-empty and of the same shape")
    if np.any(np.isnan(a)) or np.any(np.isnan(b)):
        raise AnalysisError("scores contain NaN: drop unpaired questions before testing")
    thresholds = np.linspace(0.0, 1.0, n_thresholds)[:-1]
    above_a = a[..., None] > thresholds  # (..., n, C)
    above_b = b[..., None] > thresholds
    # Counts of past pairs above each threshold (exclusive cumulative sum: predictable).
    diff = np.cumsum(above_b.astype(np.int32) - above_a.astype(np.int32), axis=-2)  # F_a - F_b after t, times t
    diff = np.concatenate([np.zeros_like(diff[..., :1, :]), diff[..., :-1, :]], axis=-2)
    best = np.argmax(np.abs(diff), axis=-1)  # (..., n)
    gap = np.take_along_axis(diff, best[..., None], axis=-1)[..., 0]
    # F_b - F_a = (#a above - #b above)/t at c; s = sign(F_b - F_a) = -sign(gap as defined above).
    sign = -np.sign(gap)
    fa = np.take_along_axis(above_a, best[..., None], axis=-1)[..., 0]
    fb = np.take_along_axis(above_b, best[..., None], axis=-1)[..., 0]
    g = sign * (fa.astype(float) - fb.astype(float)) - epsilon
    active = (sign != 0) & (np.arange(a.shape[-1]) >= warmup)
    return np.where(active, g, 0.0)


def ks_witness_test(
    a: np.ndarray, b: np.ndarray, *, alpha: float = 0.05, epsilon: float = 0.0, method: str = "ons",
    cap: float = DEFAULT_CAP, n_grid: int = DEFAULT_GRID, n_thresholds: int = 51, warmup: int = 20,
) -> BettingTestResult:
    """Sequential distribution test by betting with a KS-threshold witness (Shekhar & Ramdas 2023).

    H0(eps): ``TV(P_a, P_b) <= eps`` on the score marginals (paired or not). Under H0,
    ``E[s_t (f_t(a_t) - f_t(b_t)) | past] <= eps`` for the predictable ``[0, 1]``-valued
    witness, so the wealth ``prod (1 + lam_t g_t)``, ``lam_t`` in ``[0, cap / (1 + eps)]``, is a
    nonnegative supermartingale. Detects variance or shape changes that leave the mean intact.
    """
    _check_args(alpha, epsilon, "two-sided", cap)
    g = ks_payoffs(a, b, epsilon=epsilon, n_thresholds=n_thresholds, warmup=warmup)
    if g.ndim != 1:
        raise AnalysisError("ks_witness_test takes one sequence; use ks_payoffs for many")
    log_k = _log_wealth(g, cap / (1.0 + epsilon), method, n_grid)
    stop, e_value, p_value = _summarize(log_k, alpha)
    return BettingTestResult(
        test="ks", method=method, alternative="two-sided", alpha=alpha, epsilon=epsilon, n=int(g.size),
        log_wealth=log_k, stop=stop, e_value=e_value, p_value=p_value, mean=float("nan"),
    )


# ----------------------------------------------------------------------------- multiplicity

def e_bh(e_values: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """e-BH (Wang & Ramdas 2022): which hypotheses to reject at FDR level ``alpha``.

    With ``m`` e-values sorted decreasingly ``e_(1) >= ... >= e_(m)``, let
    ``k* = max{k : e_(k) >= m / (alpha k)}`` (0 if none); reject the ``k*`` hypotheses with
    the largest e-values (ties at the cut-off: all of them satisfy the condition too).
    Valid under arbitrary dependence. NaN e-values are never rejected (but count in ``m``).

    Returns:
        A boolean mask, shape of ``e_values``.
    """
    e = np.asarray(e_values, dtype=float)
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha must be in (0, 1), got {alpha}")
    if np.any(e < 0):
        raise AnalysisError("e-values must be nonnegative")
    m = e.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    filled = np.where(np.isnan(e), -np.inf, e).ravel()
    ranked = np.sort(filled)[::-1]
    ok = ranked >= m / (alpha * np.arange(1, m + 1))
    if not ok.any():
        return np.zeros(e.shape, dtype=bool)
    k = int(np.flatnonzero(ok)[-1]) + 1
    return (filled >= ranked[k - 1]).reshape(e.shape)


def permutation_order(n: int, seed: int = 0) -> np.ndarray:
    """The seeded random order in which ``n`` paired questions are tested (it makes them exchangeable)."""
    return np.random.default_rng(seed).permutation(n)
