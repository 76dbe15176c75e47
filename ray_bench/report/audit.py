"""``ray-bench audit shift``: the anytime-valid paired shift test on a finished run.

Reads the run (:func:`ray_bench.results.scan_run`), derives each row's bias fields
(:mod:`ray_bench.analysis.fields`), pairs the base's and the variant's rows by question,
orders the pairs by a seeded random permutation and runs the betting test of
:mod:`ray_bench.analysis.sequential` (notes: audits-and-exports.md 2.6).

Metrics: :data:`ray_bench.analysis.shift.METRICS` (``D = variant - base`` per question, in [-1, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ray_bench.analysis.sequential import BettingTestResult, mean_shift_test, permutation_order
from ray_bench.analysis.shift import paired_differences
from ray_bench.errors import AnalysisError


@dataclass(frozen=True)
class ShiftAudit:
    """What :func:`audit_shift` found: the test result and what it was run on."""

    base: str
    variant: str
    metric: str
    seed: int
    datasets: tuple[str, ...]
    differences: np.ndarray  # in test order
    result: BettingTestResult

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {"base": self.base, "variant": self.variant, "metric": self.metric, "seed": self.seed,
                "datasets": list(self.datasets), **self.result.to_dict()}


def audit_shift(
    results: str | Path, base: str, variant: str, metric: str, *, data: str | Path | None = None,
    judge: str | None = None, datasets: list[str] | None = None, alpha: float = 0.05, epsilon: float = 0.0,
    alternative: str = "two-sided", method: str = "mixture", seed: int = 0,
) -> ShiftAudit:
    """Run the anytime-valid paired shift test of ``variant`` against ``base`` on a finished run.

    The paired questions (sorted by subset and question id) are put in the order of
    :func:`~ray_bench.analysis.sequential.permutation_order` (``seed``), then tested with
    :func:`~ray_bench.analysis.sequential.mean_shift_test` (with its confidence sequence).

    Raises:
        ResultsError: the run cannot be read.
        UnknownNameError: ``base`` or ``variant`` has no results in the run.
        AnalysisError: no paired question has the metric, or bad test arguments.
    """
    from ray_bench.errors import UnknownNameError
    from ray_bench.results import scan_run

    run = scan_run(results, data, judge)
    for name in (base, variant):
        if name not in run.model_names:
            raise UnknownNameError("model", name, run.model_names)
    if base == variant:
        raise AnalysisError("--base and --variant name the same model")
    pairs = paired_differences(run.rows, base, variant, metric, datasets)
    if pairs.height == 0:
        hint = "Judge the run first (`ray-bench judge`)." if metric == "p_unsafe" else "Check --dataset and the models."
        raise AnalysisError(f"no question has {metric!r} for both {base!r} and {variant!r}", hint=hint)
    d = pairs["d"].to_numpy()[permutation_order(pairs.height, seed)]
    result = mean_shift_test(d, alpha=alpha, epsilon=epsilon, alternative=alternative, method=method)
    return ShiftAudit(base=base, variant=variant, metric=metric, seed=seed,
                      datasets=tuple(sorted(set(pairs["dataset"].to_list()))), differences=d, result=result)
