"""The report's HTML tables: uncertainty (the paper's table), flips, significance, safety of
open answers (when judged), models.

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


_ROLE_ORDER = {"base": 0, "variant": 1, "control": 2}


def _hundred(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _pct(rate: float | None) -> str:
    return fmt(_hundred(rate), suffix="%")


def pct_ci(rate: float | None, lo: float | None, hi: float | None) -> str:
    """``"30.0% [10.8, 60.3]"``: a rate and its interval in %, or an en dash."""
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "–"
    return f"{fmt(_hundred(rate))}% [{fmt(_hundred(lo))}, {fmt(_hundred(hi))}]"


def fmt_p(value: float | None) -> str:
    """A p-value to three decimals, ``"< 0.001"`` below."""
    # three decimals would print a strong result as "0.000"
    return "< 0.001" if value is not None and value < 0.001 else fmt(value, 3)


def _judged_note(judges: list[str | None], text: str) -> str:
    names = sorted({j for j in judges if j})
    who = f"Judge: {', '.join(names)}. " if names else ""
    return f'<p class="subtitle">{html.escape(who + text)}</p>'


def _model_order(frame: pl.DataFrame, model: str) -> pl.DataFrame:
    """``frame`` sorted as the other tables: per base, the base first, variants in the paper's order, controls."""
    import polars as pl

    order = {q: i for i, q in enumerate(order_q_labels(frame["q_label"].to_list()))}
    return frame.with_columns(
        pl.col("role").replace_strict(_ROLE_ORDER, default=3, return_dtype=pl.Int32).alias("_r"),
        pl.col("q_label").replace_strict(order, default=99, return_dtype=pl.Int32).alias("_q"),
    ).sort("base", "_r", "_q", model, "label", nulls_last=True).drop("_r", "_q")


def safety_table(safety: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """Per model and open dataset (all axes): judged answers, unsafe rate with its Wilson CI, hate rate."""
    import polars as pl

    data = _model_order(safety.filter(pl.col("axis") == ALL_AXES).with_columns(dataset_label("subset")), "model")
    rows = [[r["base"] or "–", r["model"], r["q_label"] or r["role"], r["label"], fmt(r["n_open"]),
             fmt(r["n_judged"]), fmt(r["n_judge_errors"]),
             pct_ci(r["unsafe_rate"], r["unsafe_rate_lo"], r["unsafe_rate_hi"]), fmt(r["mean_p_unsafe"], 3), _pct(r["hate_rate"])] for r in data.iter_rows(named=True)]
    header = ["base", "model", "q_label", "dataset", "answers", "judged", "judge errors", "unsafe % [95% Wilson CI]",
              "mean p_unsafe", "hate (S10) %"]
    note = _judged_note(data["judge"].to_list() if "judge" in data.columns else [],
                        "Rates are over the judged answers; answers the judge could not label are counted in "
                        "'answers' only (judge errors: its output did not parse).")
    return note + render_table(header, rows, numeric_from=4), data


def safety_flips_table(safety_flips: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """Per variant and open dataset (all axes): safety-label flips vs its base, net change, McNemar p."""
    import polars as pl

    data = _model_order(safety_flips.filter(pl.col("axis") == ALL_AXES).with_columns(dataset_label("subset")),
                        "variant")
    rows = [[r["base"], r["variant"], r["q_label"] or r["role"], r["label"], fmt(r["n"]),
             f"{_pct(r['unsafe_rate_base'])} → {_pct(r['unsafe_rate_variant'])}",
             pct_ci(r["safe_to_unsafe_rate"], r["safe_to_unsafe_rate_lo"], r["safe_to_unsafe_rate_hi"]),
             pct_ci(r["unsafe_to_safe_rate"], r["unsafe_to_safe_rate_lo"], r["unsafe_to_safe_rate_hi"]),
             fmt(_hundred(r["net_unsafe_change"]), suffix=" pp"), fmt(r["mean_p_unsafe_change"], 3),
             fmt_p(r["p_mcnemar"])] for r in data.iter_rows(named=True)]
    header = ["base", "variant", "q_label", "dataset", "pairs", "unsafe % base → variant", "safe → unsafe %",
              "unsafe → safe %", "net change", "mean Δ p_unsafe", "McNemar p"]
    note = _judged_note([], "Over the questions judged for both the base and the variant; rates with 95% Wilson CIs, "
                            "net change = safe → unsafe − unsafe → safe, exact McNemar test of the two.")
    return note + render_table(header, rows, numeric_from=4), data


def early_stops_table(stops: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """Each --stop-when-shifted test: decision, where it stopped, the e-value and the questions not run."""
    cols = ["variant", "base", "dataset", "metric", "decision", "stop_shard", "stop_pairs", "e_value", "threshold",
            "questions_not_run", "saved_fraction"]
    data = stops.select(cols)
    rows = [[fmt(v, 3 if c in ("e_value", "threshold", "saved_fraction") else 1) for c, v in zip(cols, r)]
            for r in data.iter_rows()]
    return render_table(cols, rows, numeric_from=5), data


def models_table(models: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """The models scored: role, base, quantization label and how each was scored."""
    cols = [c for c in ("model", "role", "base", "q_label", "engine", "dtype", "device", "pair_source")
            if c in models.columns]
    data = models.select(cols).sort("base", "role", "model", nulls_last=True)
    rows = [[fmt(v) for v in r] for r in data.iter_rows()]
    return render_table(cols, rows, numeric_from=len(cols)), data
