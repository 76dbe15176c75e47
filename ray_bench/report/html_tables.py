"""The report's HTML tables: uncertainty (the paper's table), flips, significance, models.

Each ``*_table`` function returns ``(html, frame)``: escaped HTML and the frame it shows
(saved as CSV beside the figures).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ray_bench.report.fig_significance import counted_tests, significant_share
from ray_bench.report.style import ALL_AXES, dataset_label, order_q_labels

if TYPE_CHECKING:
    import polars as pl

BINS = ("low", "medium", "high")


def fmt(value: object, digits: int = 1, suffix: str = "") -> str:
    """A cell's text: numbers rounded, missing values as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return str(value)


def render_table(header: Sequence[str | tuple[str, int]], rows: Sequence[Sequence[str]],
                 *, top: Sequence[tuple[str, int]] = (), numeric_from: int = 1) -> str:
    """An escaped ``<table>``; ``top`` is an optional grouping header row of (text, colspan)."""
    esc = html.escape
    out = ['<div class="table-wrap"><table>', "<thead>"]
    if top:
        out.append("<tr>" + "".join(f'<th colspan="{span}" class="group">{esc(t)}</th>' for t, span in top)
                   + "</tr>")
    out.append("<tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in header) + "</tr></thead><tbody>")
    for row in rows:
        cells = [f'<td class="{"num" if i >= numeric_from else "txt"}">{esc(c)}</td>' for i, c in enumerate(row)]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def uncertainty_table(uncertainty: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """The paper's uncertainty table: per dataset and base-entropy bin, % of rows, % flipped, % bias flipped."""
    import polars as pl

    data = uncertainty.with_columns(dataset_label("subset")).sort("label")
    header = ["dataset", "K"] + [c for _ in BINS for c in ("% rows", "% flipped", "% bias flipped")]
    rows = []
    for label in sorted(set(data["label"].to_list())):
        sub = data.filter(pl.col("label") == label)
        cells = [label, fmt(sub["num_choices"].max())]
        for b in BINS:
            r = sub.filter(pl.col("entropy_bin") == b)
            vals = r.row(0, named=True) if r.height else {}
            cells += [fmt(vals.get(c), 1) for c in ("pct_questions", "pct_flipped", "pct_bias_flipped")]
        rows.append(cells)
    top = [("", 2)] + [(f"{b} entropy", 3) for b in BINS]
    return render_table(header, rows, top=top), data


def _pooled_flips(flips: pl.DataFrame) -> pl.DataFrame:
    """``axis = "(all)"`` flip counts pooled over each dataset's subsets, per variant."""
    import polars as pl

    return (
        flips.filter(pl.col("axis") == ALL_AXES).with_columns(dataset_label())
        .group_by("base", "variant", "role", "q_label", "label")
        .agg(pl.col("n").sum(), pl.col("n_flipped").sum(), pl.col("n_bias_flipped").sum())
        .with_columns((100 * pl.col("n_flipped") / pl.col("n")).alias("pct_flipped"),
                      (100 * pl.col("n_bias_flipped") / pl.col("n")).alias("pct_bias_flipped"))
        .sort("base", "role", "q_label", "variant", "label")
    )


def flips_table(flips: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """Per variant (rows) and dataset (columns): "% response flipped / % bias flipped"."""
    data = _pooled_flips(flips)
    labels = sorted(set(data["label"].to_list()))
    cell = {(r["variant"], r["label"]): r for r in data.iter_rows(named=True)}
    order = {q: i for i, q in enumerate(order_q_labels(data["q_label"].to_list()))}
    variants = sorted({(r["base"], r["role"] == "control", order.get(r["q_label"], 99), r["variant"], r["q_label"])
                       for r in data.iter_rows(named=True)})
    rows = []
    for base, _ctrl, _o, variant, q_label in variants:
        cells = [base, variant, q_label or "–"]
        for lab in labels:
            r = cell.get((variant, lab))
            cells.append("–" if r is None else f"{fmt(r['pct_flipped'])} / {fmt(r['pct_bias_flipped'])}")
        rows.append(cells)
    return render_table(["base", "variant", "q_label", *labels], rows, numeric_from=3), data


def significance_table(significance: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """Per dataset: tests, % significant (pooled / within dataset), more/less biased, untested."""
    import polars as pl

    t = counted_tests(significance)
    share = significant_share(t, ["label"])
    extra = t.group_by("label").agg(
        (100 * pl.col("significant_dataset").fill_null(False).mean()).alias("pct_significant_dataset"),
        (pl.col("significant_pooled") & (pl.col("direction") == "less biased")).sum().alias("n_less_biased"),
        pl.col("cohens_dz").filter(pl.col("significant_pooled")).abs().median().alias("median_abs_dz"),
    )
    untested = (significance.filter((pl.col("role") != "control") & (pl.col("status") != "tested"))
                .with_columns(dataset_label()).group_by("label").len().rename({"len": "n_not_tested"}))
    data = (share.join(extra, on="label", how="left").join(untested, on="label", how="full", coalesce=True)
            .with_columns(pl.col("n_not_tested").fill_null(0)).sort("label"))
    rows = [[r["label"], fmt(r["n_tests"]), fmt(r["pct_significant"], suffix="%"),
             fmt(r["pct_significant_dataset"], suffix="%"), fmt(r["n_more_biased"]), fmt(r["n_less_biased"]),
             fmt(r["median_abs_dz"], 2), fmt(r["n_not_tested"])] for r in data.iter_rows(named=True)]
    header = ["dataset", "tests", "significant (pooled BH)", "significant (BH within dataset)", "more biased",
              "less biased", "median |d_z| (significant)", "not tested"]
    return render_table(header, rows), data


def models_table(models: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """The models scored: role, base, quantization label and how each was scored."""
    cols = [c for c in ("model", "role", "base", "q_label", "engine", "dtype", "device", "pair_source")
            if c in models.columns]
    data = models.select(cols).sort("base", "role", "model", nulls_last=True)
    rows = [[fmt(v) for v in r] for r in data.iter_rows()]
    return render_table(cols, rows, numeric_from=len(cols)), data
