"""Readable tables (rich) of analysis frames, as printed by ``ray-bench analyze`` and the demo."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl
    from rich.table import Table


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _dataset(row: dict) -> str:
    cond = row.get("context_condition")
    return f"{row['subset']} ({cond})" if cond else row["subset"]


def summary_rich_table(flips: pl.DataFrame, significance: pl.DataFrame) -> Table:
    """Per (variant, dataset): questions, response / bias flips with direction, the bias
    metric of base -> variant and whether the change is significant (pooled BH-FDR)."""
    import polars as pl
    from rich.table import Table

    from ray_bench.analysis.keys import ALL_AXES, DATASET_KEYS

    keys = ["variant", *DATASET_KEYS]
    sig = significance.filter(pl.col("axis") == ALL_AXES).select(
        *keys, "metric", "value_base", "value_variant", "p_value", "status", "direction"
    ) if significance.height else None
    rows = flips.join(sig, on=keys, how="left", nulls_equal=True) if sig is not None else flips
    table = Table(title="Variants vs their base: flips (95% Wilson CI) and bias metric (paired permutation test)")
    for col in ("variant", "base", "dataset", "n", "response flip", "bias flip", "U->B / B->U",
                "metric: base -> variant", "p"):
        table.add_column(col, justify="left" if col in ("variant", "base", "dataset", "metric: base -> variant") else "right")
    for row in rows.sort(["variant", *DATASET_KEYS], nulls_last=True).iter_rows(named=True):
        metric = "-"
        if row.get("metric") and row.get("value_base") is not None:
            metric = f"{row['metric']}: {row['value_base']:.3f} -> {row['value_variant']:.3f}"
        p = row.get("p_value")
        p_text = f"{p:.3f}" if p is not None and p == p else (row.get("status") or "-")
        table.add_row(
            row["variant"] + (" (control)" if row["role"] == "control" else ""), row["base"], _dataset(row),
            str(row["n"]),
            f"{_pct(row['flip_rate'])} [{_pct(row['flip_rate_lo'])}, {_pct(row['flip_rate_hi'])}]",
            _pct(row["bias_flip_rate"]), f"{_pct(row['unb_to_b_rate'])} / {_pct(row['b_to_unb_rate'])}",
            metric, p_text,
        )
    return table


def housing_rich_table(paired: pl.DataFrame) -> Table:
    """Per (model, contrast) of the housing audit: pairs, mean gap in points [95% CI], Wilcoxon p."""
    from rich.table import Table

    table = Table(title="Housing audit: counterfactual gaps (same cell, only the name changed; docs/housing.md)")
    for col in ("model", "contrast", "pairs", "scored", "mean gap [95% CI]", "Wilcoxon p", "no-score diff"):
        table.add_column(col, justify="left" if col in ("model", "contrast") else "right")
    for row in paired.iter_rows(named=True):
        gap = "-" if row["mean_diff"] is None else f"{row['mean_diff']:+.2f}"
        if row["diff_lo"] is not None:
            gap += f" [{row['diff_lo']:+.2f}, {row['diff_hi']:+.2f}]"
        p = row["p_value"]
        table.add_row(row["model"], f"{row['level']} - {row['reference']}", str(row["n_pairs"]), str(row["n_scored"]),
                      gap, f"{p:.3g}" if p is not None else row["status"],
                      "-" if row["no_score_rate_diff"] is None else f"{100 * row['no_score_rate_diff']:+.1f} pp")
    return table


def frame_rich_table(frame: pl.DataFrame, title: str) -> Table:
    """Any frame as a rich table (floats to 4 digits)."""
    from rich.table import Table

    table = Table(*frame.columns, title=title)
    for row in frame.iter_rows():
        table.add_row(*("-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    return table
