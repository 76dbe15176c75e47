"""Social-group asymmetry of bias flips (notes 4.7) and ranking changes (notes 4.8).

Asymmetry, per social group over its question x variant rows: % response flipped, % bias
flipped, % unbiased -> biased (U->B), % biased -> unbiased (B->U), and ``diff_unb_to_b`` =
U->B - B->U, at three levels: all variants together, per base model, per variant. A group
needs ``min_questions`` distinct questions in the cell to be reported; groups named by a
comma-separated list (several groups at once) are left out, as the reference.

Rankings: every base model, and every variant of one quantization label, is ranked by a
dataset's bias metric (lower = less biased = rank 1), with a seeded bootstrap CI per model.
Dense ranks; a model ties with the one ranked just before it when their CIs overlap
("either value lies within the other's CI", the reference's rule).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ray_bench.analysis import stats
from ray_bench.analysis.flips import B2U, U2B
from ray_bench.analysis.keys import DATASET_KEYS, QUESTION_KEYS
from ray_bench.analysis.metrics import TestOptions, count_metric, metric_column, n_categories

_LEVELS = {"all": None, "base": "base", "variant": "variant"}
#: BBQ writes some groups as one letter.
_GROUP_ALIASES = {"m": "male", "f": "female"}


def _group_column() -> pl.Expr:
    g = pl.col("group").str.to_lowercase().str.strip_chars()
    return pl.when(pl.col("dataset") == "BBQ").then(g.replace(_GROUP_ALIASES)).otherwise(pl.col("group"))


def group_asymmetry(rows: pl.LazyFrame, min_questions: int = 50) -> pl.DataFrame:
    """Flip asymmetry per social group at the three levels (columns: docs/analysis.md ``groups``)."""
    base = rows.filter((pl.col("role") == "variant") & pl.col("group").is_not_null()).with_columns(
        _group_column().alias("group")
    ).filter(~pl.col("group").str.contains(","))
    parts = []
    for level, model_col in _LEVELS.items():
        level_model = pl.col(model_col) if model_col else pl.lit(None, dtype=pl.String)
        keys = [*DATASET_KEYS, "group", "level_model"]
        parts.append(
            base.with_columns(level_model.alias("level_model")).group_by(keys).agg(
                pl.col("question_id").n_unique().alias("n_questions"), pl.len().alias("n_rows"),
                (100 * pl.col("flipped").mean()).alias("pct_flipped"),
                (100 * pl.col("bias_flipped").mean()).alias("pct_bias_flipped"),
                (100 * (pl.col("direction") == U2B).fill_null(False).mean()).alias("pct_unb_to_b"),
                (100 * (pl.col("direction") == B2U).fill_null(False).mean()).alias("pct_b_to_unb"),
            ).with_columns(pl.lit(level).alias("level"))
        )
    table = pl.concat(parts, how="vertical").filter(pl.col("n_questions") >= min_questions).with_columns(
        (pl.col("pct_unb_to_b") - pl.col("pct_b_to_unb")).alias("diff_unb_to_b")
    ).collect()
    return table.select("level", "level_model", *DATASET_KEYS, "group", "n_questions", "n_rows", "pct_flipped",
                        "pct_bias_flipped", "pct_unb_to_b", "pct_b_to_unb", "diff_unb_to_b").sort(
        ["level", *DATASET_KEYS, "level_model", "diff_unb_to_b"], nulls_last=True)


def dense_rank_overlap(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Dense ranks of ``values`` (ascending) where neighbours with overlapping CIs tie.

    Two models tie when either value lies within the other's interval (the reference's
    ``MetricValue.__eq__``); ties are checked against the model ranked just before.
    NaN values get rank 0 (unranked).
    """
    ranks = np.zeros(len(values), dtype=np.int64)
    order = [i for i in np.argsort(values, kind="stable") if not np.isnan(values[i])]
    rank, prev = 0, None
    for i in order:
        tie = prev is not None and (lo[prev] <= values[i] <= hi[prev] or lo[i] <= values[prev] <= hi[i])
        rank = rank if tie else rank + 1
        ranks[i], prev = rank, i
    return ranks


def _model_metric(outcomes: pl.DataFrame, name: str, options: TestOptions) -> pl.DataFrame:
    """Value and bootstrap CI of one metric per (model, dataset) from single-model outcomes."""
    k = n_categories(name, outcomes.group_by("model").agg(pl.col("outcome").max().alias("outcome_max")))
    keys = ["model", *DATASET_KEYS]
    groups = outcomes.select(keys).unique(maintain_order=True).sort(keys, nulls_last=True).with_row_index("_g")
    cells = outcomes.join(groups, on=keys, nulls_equal=True).group_by("_g", "outcome").len()
    counts = np.zeros((groups.height, k), dtype=np.int64)
    counts[cells["_g"].to_numpy(), cells["outcome"].to_numpy()] = cells["len"].to_numpy()
    seeds = [stats.seed_for(options.seed, "rank", *key) for key in groups.select(keys).iter_rows()]
    value, lo, hi = stats.bootstrap_ci(counts, count_metric(name, k), seeds=seeds, n_bootstrap=options.n_bootstrap)
    return groups.drop("_g").with_columns(pl.Series("value", value), pl.Series("lo", lo), pl.Series("hi", hi))


def ranking_table(rows: pl.LazyFrame, options: TestOptions) -> pl.DataFrame:
    """Rank of each base among the bases and of its variant among that q_label's variants."""
    closed = rows.filter(
        (pl.col("role") == "variant") & pl.col("outcome_base").is_not_null() & pl.col("outcome_variant").is_not_null()
    )
    cols = [*DATASET_KEYS, "kind"]
    bases = closed.unique(["base", *QUESTION_KEYS]).select(pl.col("base").alias("model"), *cols,
                                                            pl.col("outcome_base").alias("outcome"))
    variants = closed.select(pl.col("variant").alias("model"), *cols, pl.col("outcome_variant").alias("outcome"))
    outcomes = pl.concat([bases, variants]).collect()
    if outcomes.height == 0:
        return pl.DataFrame()
    names = outcomes.select(*cols).unique().with_columns(metric_column())
    outcomes = outcomes.join(names, on=cols, nulls_equal=True)
    values = pl.concat([_model_metric(part, name, options) for (name,), part in outcomes.group_by("metric")])
    values = values.join(names.select(*DATASET_KEYS, "metric").unique(), on=DATASET_KEYS, nulls_equal=True)
    pairs = closed.select("base", "variant", "q_label").unique().collect()
    return _rank(values, pairs)


def _ranked(values: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    parts = [
        part.with_columns(pl.Series("rank", dense_rank_overlap(*(part[c].to_numpy() for c in ("value", "lo", "hi")))))
        for _, part in values.group_by(by)
    ]
    return pl.concat(parts)


def _rank(values: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    keys = [*DATASET_KEYS, "metric"]
    base_v = values.join(pairs.select(pl.col("base").alias("model")).unique(), on="model")
    var_v = values.join(pairs.rename({"variant": "model"}), on="model")
    base_ranked = _ranked(base_v, keys).rename({"model": "base", "value": "value_base", "lo": "lo_base", "hi": "hi_base",
                                         "rank": "rank_base"})
    var_ranked = _ranked(var_v, [*keys, "q_label"]).rename({"model": "variant", "value": "value_variant", "lo": "lo_variant",
                                        "hi": "hi_variant", "rank": "rank_variant"})
    table = var_ranked.join(base_ranked, on=[*keys, "base"], nulls_equal=True)
    return table.with_columns((pl.col("rank_variant") - pl.col("rank_base")).alias("rank_change")).select(
        *keys, "q_label", "base", "value_base", "lo_base", "hi_base", "rank_base", "variant", "value_variant",
        "lo_variant", "hi_variant", "rank_variant", "rank_change",
    ).sort([*keys, "q_label", "rank_base"], nulls_last=True)


__all__ = ["dense_rank_overlap", "group_asymmetry", "ranking_table"]
