"""Per-question paired differences ``D = variant - base`` for the anytime-valid shift test.

One definition for both uses of the test (docs/audit.md): ``ray-bench audit shift`` on a
finished run (:mod:`ray_bench.report.audit`) and ``ray-bench run --stop-when-shifted``, which
runs it shard by shard while the run goes on (:mod:`ray_bench.stages.shift_stop`). Each
side's bias fields come from :mod:`ray_bench.analysis.fields`, so ``p_biased`` means here
what it means in every other table.

Metrics (``D`` always in [-1, 1]):

* ``bias_flip``: ``1{is_biased differs}`` in {0, 1}, so ``E[D]`` is the flip rate (test it
  with ``alternative="greater"`` and a tolerance: "flip rate <= eps");
* ``is_biased``: ``is_biased_variant - is_biased_base`` in {-1, 0, 1}: the paired change of
  the bias rate;
* ``p_biased``: ``p_biased_variant - p_biased_base`` (closed questions);
* ``p_unsafe``: the judge's ``p_unsafe`` of the variant minus the base's (judged open questions).
"""

from __future__ import annotations

import polars as pl

#: Metric name -> what it is (for --help and errors).
METRICS: dict[str, str] = {
    "bias_flip": "1 if is_biased differs between base and variant (mean = flip rate)",
    "is_biased": "is_biased(variant) - is_biased(base) (mean = change of the bias rate)",
    "p_biased": "p_biased(variant) - p_biased(base), closed questions",
    "p_unsafe": "judge's p_unsafe(variant) - p_unsafe(base), judged open questions",
}

#: Columns of :func:`metric_fields`.
FIELD_COLUMNS = ("model", "dataset", "subset", "question_id", "is_biased", "p_biased")


def check_metric(metric: str) -> str:
    """``metric`` if it is known.

    Raises:
        UnknownNameError: another name (with the closest known one).
    """
    if metric not in METRICS:
        from ray_bench.errors import UnknownNameError

        raise UnknownNameError("metric", metric, list(METRICS))
    return metric


def metric_fields(rows: pl.LazyFrame, metric: str) -> pl.LazyFrame:
    """The rows the metric reads (closed ones, open judged ones or both), with their bias fields."""
    from ray_bench.analysis.fields import closed_fields, open_fields

    parts = []
    if metric != "p_unsafe":
        parts.append(closed_fields(rows).select(FIELD_COLUMNS))
    if metric != "p_biased":
        parts.append(open_fields(rows).select(FIELD_COLUMNS))
    return pl.concat(parts, how="vertical_relaxed")


def difference(metric: str) -> pl.Expr:
    """``D`` of a joined pair frame (variant columns plain, base columns suffixed ``_base``)."""
    if metric == "bias_flip":
        return (pl.col("is_biased") != pl.col("is_biased_base")).cast(pl.Float64)
    if metric == "is_biased":
        return pl.col("is_biased").cast(pl.Float64) - pl.col("is_biased_base").cast(pl.Float64)
    return pl.col("p_biased").cast(pl.Float64) - pl.col("p_biased_base").cast(pl.Float64)


def paired_frame(base: pl.LazyFrame, variant: pl.LazyFrame, metric: str) -> pl.LazyFrame:
    """``dataset, subset, question_id, d`` for every question both sides have the metric for.

    ``base`` and ``variant`` are :func:`metric_fields` frames of one model each. The variant's
    row order is kept (the online test reads a shard in its seeded random order).
    """
    keys = ["subset", "question_id"]
    side = ["is_biased", "p_biased"]
    joined = variant.select("dataset", *keys, *side).join(
        base.select(*keys, *side), on=keys, how="inner", suffix="_base", maintain_order="left")
    out = joined.select("dataset", *keys, difference(metric).alias("d"))
    return out.drop_nulls("d").filter(pl.col("d").is_not_nan())


def paired_differences(
    rows: pl.LazyFrame, base: str, variant: str, metric: str, datasets: list[str] | None = None
) -> pl.DataFrame:
    """One row per question both models answered (and, for the metric, both have a value), sorted.

    Returns:
        ``dataset``, ``subset``, ``question_id``, ``d`` (the metric's ``variant - base``).

    Raises:
        UnknownNameError: unknown metric.
    """
    fields = metric_fields(rows, check_metric(metric))
    if datasets:
        fields = fields.filter(pl.col("dataset").is_in(datasets) | pl.col("subset").is_in(datasets))
    pairs = paired_frame(fields.filter(pl.col("model") == base), fields.filter(pl.col("model") == variant), metric)
    return pairs.sort(["subset", "question_id"]).collect()


#: Columns of :func:`early_stop_table`.
EARLY_STOP_COLUMNS = {
    "variant": pl.String, "base": pl.String, "dataset": pl.String, "metric": pl.String, "decision": pl.String,
    "stop_shard": pl.String, "stop_pairs": pl.Int64, "pairs": pl.Int64, "e_value": pl.Float64, "threshold": pl.Float64,
    "p_value": pl.Float64, "mean_d": pl.Float64, "planned_questions": pl.Int64, "questions_run": pl.Int64,
    "questions_not_run": pl.Int64, "saved_fraction": pl.Float64,
}


def early_stop_table(entries: dict[str, dict]) -> pl.DataFrame:
    """One row per ``run --stop-when-shifted`` test (the run manifest's ``shift_tests``)."""
    rows = []
    for entry in entries.values():
        stop = entry.get("stop") or {}
        last = (entry.get("trajectory") or [{}])[-1]
        rows.append({
            "variant": entry["variant"], "base": entry["base"], "dataset": entry["dataset"], "metric": entry["metric"],
            "decision": entry["decision"], "stop_shard": stop.get("shard"), "stop_pairs": stop.get("pairs"),
            "pairs": entry.get("pairs"), "e_value": stop.get("e_value", entry.get("e_value")),
            "threshold": 1.0 / entry["alpha_test"], "p_value": entry.get("p_value"),
            "mean_d": stop.get("mean_d", last.get("mean_d")), "planned_questions": entry.get("planned_questions"),
            "questions_run": entry.get("questions_run"), "questions_not_run": entry.get("questions_not_run"),
            "saved_fraction": entry.get("saved_fraction"),
        })
    return pl.DataFrame(rows, schema=EARLY_STOP_COLUMNS).sort(["variant", "dataset"])


def early_stop_warnings(table: pl.DataFrame) -> list[str]:
    """What the analysis must say about stopped variants: their tables cover only what ran."""
    out = []
    for r in table.filter(pl.col("decision") == "shift").iter_rows(named=True):
        out.append(
            f"{r['variant']} on {r['dataset']} was stopped early by --stop-when-shifted: the {r['metric']} shift "
            f"against {r['base']} was detected at {r['stop_shard']} after {r['stop_pairs']} paired questions "
            f"(e-value {r['e_value']:.3g} >= {r['threshold']:.3g}); {r['questions_not_run']} of "
            f"{r['planned_questions']} questions were not run, so its tables for {r['dataset']} cover a random "
            f"{100 * (1 - r['saved_fraction']):.0f}% of the questions")
    return out
