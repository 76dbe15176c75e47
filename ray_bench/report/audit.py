"""``ray-bench audit shift``: the anytime-valid paired shift test on a finished run.

Reads the run (:func:`ray_bench.results.scan_run`), derives each row's bias fields
(:mod:`ray_bench.analysis.fields`), pairs the base's and the variant's rows by question,
orders the pairs by a seeded random permutation and runs the betting test of
:mod:`ray_bench.analysis.sequential` (notes: audits-and-exports.md 2.6).

Metrics (``D = variant - base`` per question, always in [-1, 1]):

* ``bias_flip``: ``1{is_biased differs}`` in {0, 1}, so ``E[D]`` is the flip rate (test it
  with ``alternative="greater"`` and a tolerance: "flip rate <= eps");
* ``is_biased``: ``is_biased_variant - is_biased_base`` in {-1, 0, 1}: the paired change of
  the bias rate;
* ``p_biased``: ``p_biased_variant - p_biased_base`` (closed questions);
* ``p_unsafe``: the judge's ``p_unsafe`` of the variant minus the base's (judged open questions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ray_bench.analysis.sequential import BettingTestResult, mean_shift_test, permutation_order
from ray_bench.errors import AnalysisError

if TYPE_CHECKING:
    import polars as pl

#: Metric name -> what it is (for --help and errors).
METRICS: dict[str, str] = {
    "bias_flip": "1 if is_biased differs between base and variant (mean = flip rate)",
    "is_biased": "is_biased(variant) - is_biased(base) (mean = change of the bias rate)",
    "p_biased": "p_biased(variant) - p_biased(base), closed questions",
    "p_unsafe": "judge's p_unsafe(variant) - p_unsafe(base), judged open questions",
}


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


def _fields(rows: pl.LazyFrame, metric: str) -> pl.LazyFrame:
    import polars as pl

    from ray_bench.analysis.fields import closed_fields, open_fields

    cols = ["model", "dataset", "subset", "question_id", "is_biased", "p_biased"]
    parts = []
    if metric != "p_unsafe":
        parts.append(closed_fields(rows).select(cols))
    if metric != "p_biased":
        parts.append(open_fields(rows).select(cols))
    return pl.concat(parts, how="vertical_relaxed")


def paired_differences(
    rows: pl.LazyFrame, base: str, variant: str, metric: str, datasets: list[str] | None = None
) -> pl.DataFrame:
    """One row per question both models answered (and, for the metric, both have a value), sorted.

    Returns:
        ``dataset``, ``subset``, ``question_id``, ``d`` (the metric's ``variant - base``).

    Raises:
        AnalysisError: unknown metric, or no paired question.
    """
    import polars as pl

    if metric not in METRICS:
        raise AnalysisError(f"unknown metric {metric!r}", hint=f"Known metrics: {', '.join(METRICS)}.")
    fields = _fields(rows, metric)
    if datasets:
        fields = fields.filter(pl.col("dataset").is_in(datasets) | pl.col("subset").is_in(datasets))
    keys = ["subset", "question_id"]
    side = ["is_biased", "p_biased"]
    b = fields.filter(pl.col("model") == base).select(*keys, *side)
    v = fields.filter(pl.col("model") == variant).select("dataset", *keys, *side)
    paired = v.join(b, on=keys, how="inner", suffix="_base")
    if metric == "bias_flip":
        d = (pl.col("is_biased") != pl.col("is_biased_base")).cast(pl.Float64)
    elif metric == "is_biased":
        d = pl.col("is_biased").cast(pl.Float64) - pl.col("is_biased_base").cast(pl.Float64)
    else:
        d = pl.col("p_biased").cast(pl.Float64) - pl.col("p_biased_base").cast(pl.Float64)
    out = paired.select("dataset", *keys, d.alias("d")).drop_nulls("d").filter(pl.col("d").is_not_nan())
    return out.sort(keys).collect()


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
