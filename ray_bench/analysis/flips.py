"""Response flips between a base model and its variants, by the base model's uncertainty.

Definitions follow the reference benchmark (notes 4.3-4.4):

* a question *flips* when the variant's predicted choice differs from the base's;
* uncertainty is the normalized entropy ``H~ = H2(pi) / log2(K)`` of the base model's
  choice distribution ``pi`` over its ``K`` choices (zero probabilities contribute 0);
* bins: low ``H~ <= 1/3`` < medium ``<= 2/3`` < high.

Only closed questions answered without error by both models are paired.
"""

from __future__ import annotations

import polars as pl

from ray_bench.errors import AnalysisError

#: (name, upper bound) of the normalized-entropy bins, in order.
ENTROPY_BINS: tuple[tuple[str, float], ...] = (("low", 1 / 3), ("medium", 2 / 3), ("high", 1.0))
_KEYS = ["question_id", "dataset", "subset"]


def normalized_entropy(probs: pl.Expr) -> pl.Expr:
    """Base-2 Shannon entropy of a list column of probabilities divided by log2(K).

    ``K`` is the list length; a single-choice list has entropy 0.
    """
    h = probs.list.eval(
        pl.when(pl.element() > 0).then(-pl.element() * pl.element().log(2)).otherwise(0.0)
    ).list.sum()
    k = probs.list.len().cast(pl.Float64)
    return pl.when(k > 1).then(h / k.log(2)).otherwise(0.0)


def entropy_bin(h: pl.Expr) -> pl.Expr:
    """Bin name of a normalized entropy (see :data:`ENTROPY_BINS`)."""
    (low, b1), (mid, b2), (high, _) = ENTROPY_BINS
    return pl.when(h <= b1).then(pl.lit(low)).when(h <= b2).then(pl.lit(mid)).otherwise(pl.lit(high))


def pair_with_base(results: pl.DataFrame, base: str) -> pl.DataFrame:
    """One row per (variant model, question) with base and variant predictions side by side.

    Columns: ``model``, ``dataset``, ``subset``, ``question_id``, ``prediction_base``,
    ``prediction``, ``entropy_base``, ``entropy_bin``, ``flipped``.

    Raises:
        AnalysisError: ``base`` has no results, or no other model does.
    """
    models = results.get_column("model").unique().to_list()
    if base not in models:
        raise AnalysisError(
            f"base model {base!r} has no results", hint=f"Models in the results: {', '.join(sorted(models))}."
        )
    if len(models) < 2:
        raise AnalysisError(f"only the base model {base!r} has results; nothing to compare")
    closed = results.filter((pl.col("kind") == "closed") & pl.col("error").is_null())
    base_rows = closed.filter(pl.col("model") == base).select(
        *_KEYS,
        pl.col("prediction").alias("prediction_base"),
        normalized_entropy(pl.col("choice_probs")).alias("entropy_base"),
    )
    variants = closed.filter(pl.col("model") != base).select("model", *_KEYS, "prediction")
    paired = variants.join(base_rows, on=_KEYS, how="inner")
    return paired.with_columns(
        entropy_bin(pl.col("entropy_base")).alias("entropy_bin"),
        (pl.col("prediction") != pl.col("prediction_base")).alias("flipped"),
    )


def flip_table(results: pl.DataFrame, base: str) -> pl.DataFrame:
    """Flip rate per (variant model, dataset), overall and by the base model's entropy bin.

    Columns: ``model``, ``dataset``, ``subset``, ``n_questions``, ``n_flipped``,
    ``flip_rate``, and per bin ``<bin>_share`` (fraction of the questions in the bin) and
    ``<bin>_flip_rate`` (fraction of the bin's questions that flipped; null if empty).
    """
    paired = pair_with_base(results, base)
    aggs: list[pl.Expr] = [
        pl.len().alias("n_questions"),
        pl.col("flipped").sum().alias("n_flipped"),
        pl.col("flipped").mean().alias("flip_rate"),
    ]
    for name, _ in ENTROPY_BINS:
        in_bin = pl.col("entropy_bin") == name
        aggs.append(in_bin.mean().alias(f"{name}_share"))
        aggs.append(pl.col("flipped").filter(in_bin).mean().alias(f"{name}_flip_rate"))
    return (
        paired.group_by("model", "dataset", "subset")
        .agg(aggs)
        .sort("model", "dataset", "subset")
    )
