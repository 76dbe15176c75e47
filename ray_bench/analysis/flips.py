"""Response and bias flips between each variant and its own base (notes 4.3-4.4).

* a *response flip*: the variant's predicted choice differs from its base's (open
  questions: the safety label changed, as the reference);
* a *bias flip*: ``is_biased`` differs; its direction is ``unbiased_to_biased`` or
  ``biased_to_unbiased``;
* rates are over every paired question of the group, each with a 95% Wilson interval
  (Wilson 1927).

Every table has one row per (base, variant, dataset, axis) and one with ``axis = "(all)"``.
Pure Polars: frames in, frames out.
"""

from __future__ import annotations

import polars as pl

from ray_bench.analysis.fields import ENTROPY_BINS, entropy_bin
from ray_bench.analysis.keys import ALL_AXES, DATASET_KEYS, PAIR_KEYS, QUESTION_KEYS

_SIDE = ("prediction", "p_biased", "is_biased", "p_chosen", "entropy", "outcome", "response", "responses")
_SHARED = ("dataset", "axis", "kind", "group", "context_condition", "num_choices")
U2B, B2U = "unbiased_to_biased", "biased_to_unbiased"


def pair_rows(fields: pl.LazyFrame, models: pl.DataFrame) -> pl.LazyFrame:
    """One row per (variant or control, question) with base and variant side by side.

    Args:
        fields: Per-row fields (:func:`ray_bench.analysis.fields.closed_fields` / ``open_fields``)
            of every model, with a ``model`` column.
        models: The model table (:func:`ray_bench.analysis.models.model_table`).

    Returns:
        ``PAIR_KEYS``, ``method``, ``scheme``, ``DATASET_KEYS``, ``axis``, ``group``, ``kind``,
        ``question_id``, ``<field>_base`` / ``<field>_variant`` for prediction, p_biased,
        is_biased, p_chosen, entropy, outcome, response; ``entropy_diff``, ``entropy_bin`` (of the
        base), ``flipped``, ``bias_flipped``, ``direction``.
    """
    schema = fields.collect_schema()
    names = schema.names()
    side = [c for c in _SIDE if c in names]
    shared = [c for c in _SHARED if c in names]
    # Repeated strings as categoricals while joining: 2x less transient memory on the full study.
    cat = [c for c in ("subset", *shared) if schema[c] == pl.String]
    fields = fields.with_columns(pl.col("model", *cat).cast(pl.Categorical))
    pairs = models.filter(pl.col("role") != "base").select(
        pl.col("model").alias("variant"), "base", "role", "q_label", "method", "scheme"
    ).lazy().with_columns(pl.col("variant", "base").cast(pl.Categorical))
    variant = fields.select(pl.col("model").alias("variant"), *QUESTION_KEYS, *shared, *side).rename(
        {c: f"{c}_variant" for c in side}
    )
    base = fields.select(pl.col("model").alias("base"), *QUESTION_KEYS, *side).rename({c: f"{c}_base" for c in side})
    # validate="m:1" also pins the join order: Polars would otherwise join every model's rows
    # with every model's rows on the question first (60 x 60 rows per question in the study).
    paired = variant.join(pairs, on="variant", how="inner", validate="m:1").join(
        base, on=["base", *QUESTION_KEYS], how="inner", validate="m:1"
    ).with_columns(pl.col("variant", "base", *cat).cast(pl.String))
    return paired.with_columns(*_flip_columns(names))


def _flip_columns(names: list[str]) -> list[pl.Expr]:
    kind_open = pl.col("kind") == "open"
    bias_flip = pl.col("is_biased_base") != pl.col("is_biased_variant")
    response_flip = pl.col("prediction_base") != pl.col("prediction_variant")
    return [
        (pl.col("entropy_variant") - pl.col("entropy_base")).alias("entropy_diff"),
        entropy_bin(pl.col("entropy_base")).alias("entropy_bin"),
        pl.when(kind_open).then(bias_flip).otherwise(response_flip).alias("flipped"),
        bias_flip.alias("bias_flipped"),
        pl.when(bias_flip & pl.col("is_biased_variant")).then(pl.lit(U2B))
        .when(bias_flip).then(pl.lit(B2U)).otherwise(None).alias("direction"),
    ]


def with_all_axes(rows: pl.LazyFrame) -> pl.LazyFrame:
    """``rows`` plus a copy with ``axis = "(all)"`` (for per-dataset aggregates beside per-axis ones)."""
    return pl.concat([rows, rows.with_columns(pl.lit(ALL_AXES).alias("axis"))], how="vertical")


def wilson_columns(frame: pl.DataFrame, count: str, prefix: str, total: str = "n") -> pl.DataFrame:
    """``frame`` with ``<prefix>_rate`` = ``count / total`` and its 95% Wilson (1927) interval
    ``<prefix>_rate_lo`` / ``_hi``; all three null where ``total`` is 0."""
    from ray_bench.analysis.stats import wilson_interval

    lo, hi = wilson_interval(frame[count].to_numpy(), frame[total].to_numpy())
    return frame.with_columns(
        pl.when(pl.col(total) > 0).then(pl.col(count) / pl.col(total)).alias(f"{prefix}_rate"),
        pl.Series(f"{prefix}_rate_lo", lo, dtype=pl.Float64).fill_nan(None),
        pl.Series(f"{prefix}_rate_hi", hi, dtype=pl.Float64).fill_nan(None),
    )


def flip_table(rows: pl.LazyFrame) -> pl.DataFrame:
    """Flip rates per (base, variant, dataset, axis), with Wilson intervals and control columns.

    Columns: see docs/analysis.md, table ``flips``.
    """
    keys = [*PAIR_KEYS, *DATASET_KEYS, "axis"]
    agg = (
        with_all_axes(rows).group_by(keys).agg(
            pl.len().alias("n"),
            pl.col("flipped").sum().alias("n_flipped"),
            pl.col("bias_flipped").sum().alias("n_bias_flipped"),
            (pl.col("direction") == U2B).sum().alias("n_unb_to_b"),
            (pl.col("direction") == B2U).sum().alias("n_b_to_unb"),
            pl.col("entropy_base").mean().alias("mean_entropy_base"),
            pl.col("entropy_variant").mean().alias("mean_entropy_variant"),
            pl.col("entropy_diff").mean().alias("mean_entropy_diff"),
        ).collect()
    )
    for count, prefix in (("n_flipped", "flip"), ("n_bias_flipped", "bias_flip"), ("n_unb_to_b", "unb_to_b"),
                          ("n_b_to_unb", "b_to_unb")):
        agg = wilson_columns(agg, count, prefix)
    return _add_control(agg, rows).sort(keys, nulls_last=True)


def _add_control(table: pl.DataFrame, rows: pl.LazyFrame) -> pl.DataFrame:
    """Beside each variant: its base's control flip rates and an exact McNemar test against them."""
    from ray_bench.analysis.stats import mcnemar_exact

    ctrl_keys = ["base", *DATASET_KEYS, "axis"]
    controls = table.filter(pl.col("role") == "control").select(
        *ctrl_keys, pl.col("flip_rate").alias("control_flip_rate"),
        pl.col("bias_flip_rate").alias("control_bias_flip_rate"),
    )
    ctrl_rows = rows.filter(pl.col("role") == "control").select(
        "base", *QUESTION_KEYS, pl.col("flipped").alias("flipped_control")
    )
    both = (
        with_all_axes(rows.filter(pl.col("role") == "variant").join(ctrl_rows, on=["base", *QUESTION_KEYS]))
        .group_by(["variant", *ctrl_keys])
        .agg((pl.col("flipped") & ~pl.col("flipped_control")).sum().alias("b"),
             (~pl.col("flipped") & pl.col("flipped_control")).sum().alias("c"))
        .collect()
    )
    both = both.with_columns(pl.Series("p_vs_control", mcnemar_exact(both["b"].to_numpy(), both["c"].to_numpy()),
                                       dtype=pl.Float64)).drop("b", "c")
    return table.join(controls, on=ctrl_keys, how="left", nulls_equal=True).join(
        both, on=["variant", *ctrl_keys], how="left", nulls_equal=True
    )


def uncertainty_table(rows: pl.LazyFrame) -> pl.DataFrame:
    """Per dataset and base-entropy bin: % of question x variant rows in the bin, % of them
    whose response flipped, % whose bias flipped (the paper's uncertainty table).

    Open datasets take part when their rows carry an entropy (the judge's, from ``p_unsafe``):
    rows without one are left out there rather than counted in no bin.
    """
    usable = (pl.col("kind") == "closed") | pl.col("entropy_bin").is_not_null()
    used = rows.filter(usable & (pl.col("role") == "variant"))
    table = (
        used.group_by([*DATASET_KEYS, "entropy_bin"]).agg(
            pl.col("num_choices").first(), pl.len().alias("n_rows"),
            (100 * pl.col("flipped").mean()).alias("pct_flipped"),
            (100 * pl.col("bias_flipped").mean()).alias("pct_bias_flipped"),
        ).with_columns(
            (100 * pl.col("n_rows") / pl.col("n_rows").sum().over(DATASET_KEYS)).alias("pct_questions")
        ).collect()
    )
    order = pl.col("entropy_bin").replace_strict({name: i for i, (name, _) in enumerate(ENTROPY_BINS)})
    return table.sort([*DATASET_KEYS, order], nulls_last=True).select(
        *DATASET_KEYS, "entropy_bin", "num_choices", "n_rows", "pct_questions", "pct_flipped", "pct_bias_flipped"
    )


def question_flip_table(rows: pl.LazyFrame) -> pl.DataFrame:
    """Per question: over how many variants it was paired and the share that flipped (fig 5a)."""
    return (
        rows.filter(pl.col("role") == "variant")
        .group_by([*DATASET_KEYS, "question_id"])
        .agg(pl.len().alias("n_variants"), pl.col("flipped").mean().alias("flip_rate"),
             pl.col("bias_flipped").mean().alias("bias_flip_rate"))
        .sort([*DATASET_KEYS, "question_id"], nulls_last=True)
        .collect()
    )
