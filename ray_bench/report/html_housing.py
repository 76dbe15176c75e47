"""The housing audit's HTML tables: refusals, Kruskal-Wallis / Dunn, counterfactual pairs, quantization gaps.

Each function returns ``(html, frame)`` like :mod:`ray_bench.report.html_tables`; the report shows
them when the analysis has housing tables (docs/housing.md).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from ray_bench.report.html_tables import fmt, fmt_p, pct_ci, render_table

if TYPE_CHECKING:
    import polars as pl

ALL = "(all)"


def _ci(mean: float | None, lo: float | None, hi: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:+.2f}" + ("" if lo is None or hi is None else f" [{lo:+.2f}, {hi:+.2f}]")


def _note(text: str) -> str:
    return f'<p class="subtitle">{html.escape(text)}</p>'


def refusals_table(refusals: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """Rows: factor levels (all answers first); columns: models; cells: no-score % [95% Wilson CI]."""
    import polars as pl

    data = refusals.select("model", "subset", "factor", "level", "n_answered", "n_no_score", "n_error",
                           "no_score_rate", "no_score_rate_lo", "no_score_rate_hi")
    models = list(dict.fromkeys(data["model"].to_list()))
    cell = {(r["subset"], r["factor"], r["level"], r["model"]): r for r in data.iter_rows(named=True)}
    keys = list(dict.fromkeys(k[:3] for k in cell))
    keys = [k for k in keys if k[1] == ALL] + [k for k in keys if k[1] != ALL]
    rows = []
    for subset, factor, level in keys:
        cells = [subset, factor, level]
        for model in models:
            r = cell.get((subset, factor, level, model))
            cells.append("–" if r is None else f"{pct_ci(r['no_score_rate'], r['no_score_rate_lo'], r['no_score_rate_hi'])}"
                         f" of {r['n_answered']:,}")
        rows.append(cells)
    errors = data.filter(pl.col("factor") == ALL).select("model", "n_error")
    lost = ", ".join(f"{m}: {n:,}" for m, n in errors.iter_rows() if n)
    note = _note("Answers without a valid 'Score: X/100' per level, over the answered questions, with 95% Wilson "
                 "intervals. A refusal is its own outcome here, never a silently dropped row."
                 + (f" Engine errors (not in the rates): {lost}." if lost else ""))
    return note + render_table(["subset", "factor", "level", *models], rows, numeric_from=3), data


def tests_table(tests: pl.DataFrame, dunn: pl.DataFrame | None) -> tuple[str, pl.DataFrame]:
    """Per model and factor: Kruskal-Wallis H, p, epsilon^2, Dunn pairs significant, no-score chi-square p."""
    import polars as pl

    if dunn is not None and dunn.height:
        counts = dunn.group_by("model", "subset", "factor").agg(
            pl.len().alias("n_pairs"), pl.col("significant").fill_null(False).sum().alias("n_significant"),
            pl.col("correction").first())
        data = tests.join(counts, on=["model", "subset", "factor"], how="left")
    else:
        data = tests.with_columns(pl.lit(None, dtype=pl.UInt32).alias("n_pairs"),
                                  pl.lit(None, dtype=pl.UInt32).alias("n_significant"),
                                  pl.lit(None, dtype=pl.String).alias("correction"))
    rows = [[r["model"], r["factor"], fmt(r["n"]), fmt(r["n_levels"]), fmt(r["h"], 1), fmt_p(r["p_value"]),
             fmt(r["epsilon_squared"], 3),
             "–" if r["n_pairs"] is None else f"{r['n_significant']} of {r['n_pairs']} ({r['correction']})",
             fmt_p(r["p_no_score_chi2"]), r["status"]] for r in data.iter_rows(named=True)]
    header = ["model", "factor", "scored", "levels", "Kruskal-Wallis H", "p", "ε²", "Dunn pairs significant",
              "no-score χ² p", "status"]
    note = _note("Kruskal-Wallis H test over each factor's levels (scipy), Dunn's post-hoc with the stated "
                 "correction over that factor's level pairs (scikit-posthocs; every pair in housing_dunn.csv), "
                 "and a chi-square test of no-score vs level.")
    return note + render_table(header, rows, numeric_from=2), data


def paired_table(paired: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """Per model and contrast: pairs, dropped pairs, mean gap [95% CI], Wilcoxon p, no-score difference."""
    rows = [[r["model"], f"{r['level']} − {r['reference']}", fmt(r["n_pairs"]), fmt(r["n_scored"]),
             fmt(r["n_dropped"]), _ci(r["mean_diff"], r["diff_lo"], r["diff_hi"]), fmt(r["median_diff"], 1),
             fmt_p(r["p_value"]), fmt(None if r["no_score_rate_diff"] is None else 100 * r["no_score_rate_diff"], 1,
                                   " pp"), fmt_p(r["p_no_score_mcnemar"]), r["status"]]
            for r in paired.iter_rows(named=True)]
    header = ["model", "contrast", "pairs", "scored pairs", "dropped", "mean gap [95% CI]", "median gap",
              "Wilcoxon p", "Δ no-score", "McNemar p", "status"]
    note = _note("Counterfactual pairs: the same context cell and replicate, only the name's gender (or race) "
                 "changed, names matched by position in the names table. Wilcoxon signed-rank test (Pratt's "
                 "treatment of zero differences); pairs without a score on both sides are dropped and counted, "
                 "and their no-score difference is tested with an exact McNemar test.")
    return note + render_table(header, rows, numeric_from=2), paired


def quant_gaps_table(gaps: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """Per variant and contrast: the gap in the base and the variant, its change [95% CI], permutation p."""
    rows = [[r["base"], r["variant"], r["q_label"] or "–", f"{r['level']} − {r['reference']}", fmt(r["n_matched"]),
             "–" if r["gap_base"] is None else f"{r['gap_base']:+.2f} → {r['gap_variant']:+.2f}",
             _ci(r["gap_change"], r["change_lo"], r["change_hi"]), fmt_p(r["p_value"]), r["direction"] or "–",
             r["status"]] for r in gaps.iter_rows(named=True)]
    header = ["base", "variant", "q_label", "contrast", "matched pairs", "gap base → variant", "change [95% CI]",
              "permutation p", "|gap|", "status"]
    note = _note("Over the pairs scored on both sides for both models: paired permutation test of the gap's "
                 "change (base and variant labels swapped within each pair; scipy.stats.permutation_test).")
    return note + render_table(header, rows, numeric_from=4), gaps
