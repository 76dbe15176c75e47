"""Tests of the housing audit: Kruskal-Wallis with Dunn's post-hoc, counterfactual pairs, quantization gaps.

Every test is an established implementation called on the parsed scores of
:mod:`ray_bench.analysis.housing` (``outcome == "score"`` rows):

* :func:`housing_tests`: per model x factor, the Kruskal-Wallis H test over the factor's
  levels (Kruskal & Wallis 1952; ``scipy.stats.kruskal``, tie-corrected) with the effect size
  epsilon^2 = H / (n - 1) (Tomczak & Tomczak 2014), and a Pearson chi-square test of
  independence of no-score vs level (``scipy.stats.chi2_contingency``, no continuity correction);
* :func:`housing_dunn`: Dunn's (1964) post-hoc z-tests of every level pair
  (``scikit_posthocs.posthoc_dunn``, tie-corrected as Glantz 2012) with a Holm (default) or
  Bonferroni correction over *that factor's* pairs, and the signed mean / median differences;
* :func:`counterfactual_pairs` / :func:`housing_paired`: the same design cell with only the
  name's gender (or race) changed, compared pair by pair with the Wilcoxon signed-rank test
  (Wilcoxon 1945; ``scipy.stats.wilcoxon``, ``zero_method="pratt"``), mean difference in points
  with a t interval, and the no-score discordance with an exact McNemar test;
* :func:`housing_quant_gaps`: per base/variant pair, each counterfactual gap in the base and
  in the variant and a paired permutation test of its change (``scipy.stats.permutation_test``,
  ``permutation_type="samples"``: base and variant labels swapped within each matched pair).

What a counterfactual pair is (docs/housing.md): first names differ by gender and race, so no
two names differ *only* in gender. A gender pair is two answers in the same
(model, race, surname, context cell, replicate) stratum whose first names hold the same
position in the names sheet's list of their gender (1st Woman name with 1st Man name, ...);
a race pair is two answers in the same (model, gender, context cell, replicate) stratum with
the same first-name and surname positions in their races' lists. Positions are the order of the
applicants (``cell`` // cells per applicant; the design enumerates names in sheet order) among
the applicants present in the results. The mean of the pair differences is the same for any
matching of positions; the Wilcoxon test is not.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl

from ray_bench.analysis.housing import ALL_FACTORS, FACTORS, MODEL_KEYS, HousingOptions, level_rank, mean_ci

GENDER_CONTRASTS = (("Woman", "Man"), ("Woman", "None-Control"), ("Man", "None-Control"))
RACE_REFERENCE = "Anglo"
_CONTEXT = [f for f in ALL_FACTORS if f not in ("gender", "race")]
#: Per varied factor, what else a pair holds fixed (besides the model, context cell and replicate).
_STRATA = {"gender": ["race", "last_name"], "race": ["gender"]}
WILCOXON_ZERO_METHOD = "pratt"


def _scored(frame: pl.DataFrame, factor: str) -> dict[str, np.ndarray]:
    """Level -> its scores (scored rows only), levels in the design's order."""
    sub = frame.filter(pl.col("outcome") == "score")
    out: dict[str, np.ndarray] = {}
    if not sub.height:
        return out
    grouped = sub.group_by(factor).agg(pl.col("score"))
    ranked = grouped.with_columns(pl.lit(factor).alias("_factor")).rename({factor: "_level"})
    ranked = ranked.with_columns(level_rank(ranked, "_factor", "_level")).sort("_rank")
    for level, scores in zip(ranked["_level"], ranked["score"]):
        out[level] = np.asarray(scores, dtype=float)
    return out


def _groups(scores: pl.DataFrame):
    """(model, subset, factor, that model's rows of the subset) for every factor of the subset's design."""
    for (model, subset), frame in scores.group_by(MODEL_KEYS, maintain_order=True):
        design = frame["design"][0]
        for factor in FACTORS[design]:
            yield model, subset, factor, frame


def _refusal_test(frame: pl.DataFrame, factor: str) -> float | None:
    """Pearson chi-square p of no-score vs level (answered rows), None when either outcome is absent."""
    from scipy import stats as sps

    counts = (frame.filter(pl.col("outcome") != "error").group_by(factor)
              .agg((pl.col("outcome") == "score").sum().alias("s"), (pl.col("outcome") == "no_score").sum().alias("r")))
    table = counts.select("s", "r").to_numpy()
    if table.shape[0] < 2 or (table.sum(axis=0) == 0).any():
        return None
    return float(sps.chi2_contingency(table, correction=False).pvalue)


def housing_tests(scores: pl.DataFrame) -> pl.DataFrame:
    """Kruskal-Wallis test of each factor per (model, subset), plus the no-score chi-square test.

    Returns:
        ``model, subset, factor, n_levels`` (levels with a score), ``n`` (scored answers),
        ``h``, ``p_value``, ``epsilon_squared``, ``p_no_score_chi2``, ``status`` (``tested``,
        ``untested: fewer than 2 levels with scores``, ``undefined: every score is equal``).
    """
    from scipy import stats as sps

    rows = []
    for model, subset, factor, frame in _groups(scores):
        groups = _scored(frame, factor)
        n = int(sum(len(g) for g in groups.values()))
        row = {"model": model, "subset": subset, "factor": factor, "n_levels": len(groups), "n": n,
               "h": None, "p_value": None, "epsilon_squared": None,
               "p_no_score_chi2": _refusal_test(frame, factor), "status": "tested"}
        if len(groups) < 2:
            row["status"] = "untested: fewer than 2 levels with scores"
        elif len({float(v) for g in groups.values() for v in g}) == 1:
            row["status"] = "undefined: every score is equal"
        else:
            result = sps.kruskal(*groups.values())
            row |= {"h": float(result.statistic), "p_value": float(result.pvalue),
                    "epsilon_squared": float(result.statistic) / (n - 1)}
        rows.append(row)
    schema = {"model": pl.String, "subset": pl.String, "factor": pl.String, "n_levels": pl.Int64, "n": pl.Int64,
              "h": pl.Float64, "p_value": pl.Float64, "epsilon_squared": pl.Float64,
              "p_no_score_chi2": pl.Float64, "status": pl.String}
    return pl.DataFrame(rows, schema=schema)


def housing_dunn(scores: pl.DataFrame, options: HousingOptions | None = None) -> pl.DataFrame:
    """Dunn's post-hoc test of every level pair of every factor per (model, subset).

    Returns:
        ``model, subset, factor, level_a, level_b`` (a before b in the design's order), ``n_a``,
        ``n_b``, ``mean_a``, ``mean_b``, ``mean_diff`` (a - b, points), ``median_diff``, ``p_value``
        (unadjusted), ``p_adjusted`` (``correction`` over the factor's k(k-1)/2 pairs),
        ``correction``, ``significant`` (p_adjusted < alpha).
    """
    import pandas as pd
    import scikit_posthocs as sp

    options = options or HousingOptions()
    rows = []
    for model, subset, factor, frame in _groups(scores):
        groups = _scored(frame, factor)
        if len(groups) < 2:
            continue
        data = pd.DataFrame({"score": np.concatenate(list(groups.values())),
                             "level": np.repeat(list(groups), [len(g) for g in groups.values()])})
        with warnings.catch_warnings():  # every score equal: z = 0/0, p stays NaN (null)
            warnings.simplefilter("ignore", RuntimeWarning)
            raw = sp.posthoc_dunn(data, val_col="score", group_col="level")
            adjusted = sp.posthoc_dunn(data, val_col="score", group_col="level", p_adjust=options.correction)
        levels = list(groups)
        for i, a in enumerate(levels):
            for b in levels[i + 1:]:
                p, p_adj = float(raw.loc[a, b]), float(adjusted.loc[a, b])
                rows.append({
                    "model": model, "subset": subset, "factor": factor, "level_a": a, "level_b": b,
                    "n_a": len(groups[a]), "n_b": len(groups[b]),
                    "mean_a": float(groups[a].mean()), "mean_b": float(groups[b].mean()),
                    "mean_diff": float(groups[a].mean() - groups[b].mean()),
                    "median_diff": float(np.median(groups[a]) - np.median(groups[b])),
                    "p_value": None if np.isnan(p) else p, "p_adjusted": None if np.isnan(p_adj) else p_adj,
                    "correction": options.correction,
                    "significant": None if np.isnan(p_adj) else bool(p_adj < options.alpha),
                })
    schema = {"model": pl.String, "subset": pl.String, "factor": pl.String, "level_a": pl.String,
              "level_b": pl.String, "n_a": pl.Int64, "n_b": pl.Int64, "mean_a": pl.Float64, "mean_b": pl.Float64,
              "mean_diff": pl.Float64, "median_diff": pl.Float64, "p_value": pl.Float64, "p_adjusted": pl.Float64,
              "correction": pl.String, "significant": pl.Boolean}
    return pl.DataFrame(rows, schema=schema)


# --- counterfactual pairs --------------------------------------------------------------------


def contrasts(scores: pl.DataFrame) -> list[tuple[str, str, str]]:
    """``(factor, level, reference)`` of every contrast whose two levels occur in ``scores``.

    Gender: Woman - Man, and each of them against the gender-neutral control (a title or an
    initial). Race: every other level (the race control included) against Anglo, the
    reference group of the name studies the names come from (Gaddis 2017).
    """
    genders = set(scores["gender"].unique().to_list())
    races = set(scores["race"].unique().to_list())
    out = [("gender", a, b) for a, b in GENDER_CONTRASTS if {a, b} <= genders]
    if RACE_REFERENCE in races:
        others = pl.DataFrame({"factor": "race", "level": sorted(races - {RACE_REFERENCE})})
        ordered = others.with_columns(level_rank(others)).sort("_rank")["level"].to_list() if others.height else []
        out += [("race", level, RACE_REFERENCE) for level in ordered]
    return out


def _positions(factor: str) -> pl.Expr:
    """Each row's name position: the rank of its applicant among the applicants of its level and stratum.

    The applicant is ``cell // (cells per applicant)``: the design enumerates the names in sheet
    order and, for each, every context cell (ray_bench/datasets/housing.py). Ranked over every
    model's rows, so a row missing for one model does not shift the others' positions.
    """
    from ray_bench.datasets.housing import VARIABLES

    per_applicant = {d: len(a[1]) * len(b[1]) for d, (a, b) in VARIABLES.items()}
    applicant = pl.col("cell") // pl.col("design").replace_strict(per_applicant, return_dtype=pl.Int64)
    return (applicant.rank("dense").over(["subset", *_STRATA[factor], factor]) - 1).cast(pl.Int64)


def _with_pair_ids(scores: pl.DataFrame, factor: str) -> pl.DataFrame:
    """``scores`` with ``pair_id``: the stratum and name position that a pair varying ``factor`` shares."""
    stratum = [*_STRATA[factor], *_CONTEXT, "replicate", "position"]
    pair_id = pl.concat_str([pl.col(c).cast(pl.String).fill_null("") for c in stratum], separator="|")
    return scores.with_columns(_positions(factor).alias("position")).with_columns(pair_id.alias("pair_id"))


def _side(keyed: pl.DataFrame, factor: str, level: str, suffix: str) -> pl.DataFrame:
    """One side of a contrast: the ``level`` rows of ``keyed`` (:func:`_with_pair_ids`)."""
    side = keyed.filter(pl.col(factor) == level)
    return side.select(*MODEL_KEYS, "pair_id", pl.col("question_id").alias(f"question_id_{suffix}"),
                       pl.col("score").alias(f"score_{suffix}"), pl.col("outcome").alias(f"outcome_{suffix}"))


def counterfactual_pairs(scores: pl.DataFrame) -> pl.DataFrame:
    """Every counterfactual pair of every contrast (see the module docstring for the matching).

    Returns:
        ``model, subset, factor, level, reference, pair_id`` (the stratum and position, the same
        for every model), ``question_id_level``, ``score_level``, ``outcome_level`` and the same
        ``_reference`` columns; a row without a partner has nulls on the other side.
    """
    found = contrasts(scores)
    keyed = {factor: _with_pair_ids(scores, factor) for factor in dict.fromkeys(c[0] for c in found)}
    parts = []
    for index, (factor, level, reference) in enumerate(found):
        left = _side(keyed[factor], factor, level, "level")
        right = _side(keyed[factor], factor, reference, "reference")
        joined = left.join(right, on=[*MODEL_KEYS, "pair_id"], how="full", coalesce=True)
        parts.append(joined.with_columns(pl.lit(factor).alias("factor"), pl.lit(level).alias("level"),
                                         pl.lit(reference).alias("reference"), pl.lit(index).alias("_c")))
    if not parts:
        return pl.DataFrame()
    front = [*MODEL_KEYS, "factor", "level", "reference", "pair_id"]
    out = pl.concat(parts, how="vertical").sort(*MODEL_KEYS, "_c", "pair_id").drop("_c")
    return out.select(*front, pl.exclude(front))


def _no_score_rate(outcome: pl.Expr) -> pl.Expr:
    answered = (outcome.is_not_null() & (outcome != "error")).sum()
    return pl.when(answered > 0).then((outcome == "no_score").sum() / answered)


def _wilcoxon(d: np.ndarray, options: HousingOptions) -> tuple[float | None, float | None, str]:
    from scipy import stats as sps

    if len(d) < options.min_pairs:
        return None, None, f"untested: n < {options.min_pairs}"
    if not np.any(d != 0):
        return None, None, "undefined: every pair is tied"
    result = sps.wilcoxon(d, zero_method=WILCOXON_ZERO_METHOD)
    return float(result.statistic), float(result.pvalue), "tested"


_PAIR_KEYS = [*MODEL_KEYS, "factor", "level", "reference"]


def housing_paired(pairs: pl.DataFrame, options: HousingOptions | None = None) -> pl.DataFrame:
    """Per (model, subset, contrast): the counterfactual gap in points and its signed-rank test.

    Returns:
        ``model, subset, factor, level, reference``, ``n_pairs`` (both answers present),
        ``n_unpaired`` (answers without a partner), ``n_scored`` (a score on both sides),
        ``n_dropped`` (= n_pairs - n_scored: no score or an error on a side; counted, not hidden),
        ``mean_diff`` (level - reference), ``diff_lo`` / ``diff_hi`` (t interval), ``median_diff``,
        ``n_zero`` (tied pairs), ``wilcoxon_w``, ``p_value``, ``zero_method``, ``status``,
        ``no_score_rate_level`` / ``_reference`` / ``_diff`` (over the pairs' answered rows) and
        ``p_no_score_mcnemar`` (exact McNemar test of the pairs where exactly one side has no score).
    """
    from ray_bench.analysis.stats import mcnemar_exact

    options = options or HousingOptions()
    if not pairs.height:
        return pl.DataFrame()
    both = pl.col("outcome_level").is_not_null() & pl.col("outcome_reference").is_not_null()
    scored = (pl.col("outcome_level") == "score") & (pl.col("outcome_reference") == "score")
    agg = pairs.group_by(_PAIR_KEYS, maintain_order=True).agg(
        both.sum().alias("n_pairs"), (~both).sum().alias("n_unpaired"), scored.sum().alias("n_scored"),
        (pl.col("score_level") - pl.col("score_reference")).filter(scored).alias("_d"),
        _no_score_rate(pl.col("outcome_level").filter(both)).alias("no_score_rate_level"),
        _no_score_rate(pl.col("outcome_reference").filter(both)).alias("no_score_rate_reference"),
        (both & (pl.col("outcome_level") == "no_score") & (pl.col("outcome_reference") == "score")).sum().alias("_b"),
        (both & (pl.col("outcome_level") == "score") & (pl.col("outcome_reference") == "no_score")).sum().alias("_c"),
    )
    stats = []
    for d in agg["_d"].to_list():
        x = np.asarray(d, dtype=float)
        lo, hi = mean_ci(x, options.alpha)
        w, p, status = _wilcoxon(x, options)
        stats.append({"mean_diff": float(x.mean()) if x.size else None, "diff_lo": lo, "diff_hi": hi,
                      "median_diff": float(np.median(x)) if x.size else None, "n_zero": int((x == 0).sum()),
                      "wilcoxon_w": w, "p_value": p, "status": status})
    schema = {"mean_diff": pl.Float64, "diff_lo": pl.Float64, "diff_hi": pl.Float64, "median_diff": pl.Float64,
              "n_zero": pl.Int64, "wilcoxon_w": pl.Float64, "p_value": pl.Float64, "status": pl.String}
    out = pl.concat([agg, pl.DataFrame(stats, schema=schema)], how="horizontal").with_columns(
        (pl.col("n_pairs") - pl.col("n_scored")).alias("n_dropped"),
        pl.lit(WILCOXON_ZERO_METHOD).alias("zero_method"),
        (pl.col("no_score_rate_level") - pl.col("no_score_rate_reference")).alias("no_score_rate_diff"),
        pl.Series("p_no_score_mcnemar", mcnemar_exact(agg["_b"].to_numpy(), agg["_c"].to_numpy()), dtype=pl.Float64),
    )
    return out.select(
        *_PAIR_KEYS, "n_pairs", "n_unpaired", "n_scored", "n_dropped", "mean_diff", "diff_lo", "diff_hi",
        "median_diff", "n_zero", "wilcoxon_w", "p_value", "zero_method", "status", "no_score_rate_level",
        "no_score_rate_reference", "no_score_rate_diff", "p_no_score_mcnemar",
    )


# --- quantization ----------------------------------------------------------------------------


def paired_permutation_p(x: np.ndarray, y: np.ndarray, n_permutations: int, seed: int) -> float:
    """Two-sided p of mean(x) - mean(y) when x_i and y_i are exchangeable within each pair.

    ``scipy.stats.permutation_test`` with ``permutation_type="samples"``: exact over all 2^n
    swaps when 2^n <= ``n_permutations``, else ``n_permutations`` random swaps (seeded; p then
    counts the observed statistic, as Phipson & Smyth 2010).
    """
    from scipy import stats as sps

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    result = sps.permutation_test((x, y), statistic, permutation_type="samples", vectorized=True,
                                  n_resamples=n_permutations, alternative="two-sided",
                                  rng=np.random.default_rng(seed))
    return float(result.pvalue)


def _model_gaps(pairs: pl.DataFrame, model: str, side: str) -> pl.DataFrame:
    sub = pairs.filter((pl.col("model") == model) & pl.col("outcome_level").is_not_null()
                       & pl.col("outcome_reference").is_not_null())
    scored = (pl.col("outcome_level") == "score") & (pl.col("outcome_reference") == "score")
    return sub.select("subset", "factor", "level", "reference", "pair_id",
                      pl.when(scored).then(pl.col("score_level") - pl.col("score_reference")).alias(f"d_{side}"))


def housing_quant_gaps(pairs: pl.DataFrame, models: pl.DataFrame, options: HousingOptions | None = None, *,
                       n_permutations: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Per (base, variant, subset, contrast): the counterfactual gap before and after quantization.

    Over the pairs both models answered with a score on both sides (``n_matched``): ``gap_base``
    and ``gap_variant`` (mean level - reference difference, points), ``gap_change`` = variant -
    base with a t interval (``change_lo`` / ``change_hi``) and the paired permutation p-value;
    ``direction`` is ``wider`` / ``narrower`` / ``no change`` (|gap| compared). ``n_dropped``
    counts the pairs present for both models where some answer has no score.
    """
    from ray_bench.analysis.stats import seed_for

    options = options or HousingOptions()
    keys = ["subset", "factor", "level", "reference"]
    rows = []
    if not pairs.height:
        return pl.DataFrame()
    for pair in models.filter(pl.col("role") != "base").iter_rows(named=True):
        base, variant = pair["base"], pair["model"]
        joined = _model_gaps(pairs, base, "base").join(_model_gaps(pairs, variant, "variant"),
                                                       on=[*keys, "pair_id"], how="inner")
        for key, group in joined.group_by(keys, maintain_order=True):
            ok = group.filter(pl.col("d_base").is_not_null() & pl.col("d_variant").is_not_null())
            x, y = ok["d_variant"].to_numpy(), ok["d_base"].to_numpy()
            row = dict(zip(keys, key)) | {"base": base, "variant": variant, "role": pair["role"],
                                          "q_label": pair["q_label"], "n_matched": ok.height,
                                          "n_dropped": group.height - ok.height}
            lo, hi = mean_ci(x - y, options.alpha)
            gap_b, gap_v = (float(y.mean()), float(x.mean())) if ok.height else (None, None)
            p, status = None, f"untested: n < {options.min_pairs}"
            if ok.height >= options.min_pairs:
                status = "tested"
                p = 1.0 if not np.any(x != y) else paired_permutation_p(
                    x, y, n_permutations, seed_for(seed, base, variant, *key))
            rows.append(row | {"gap_base": gap_b, "gap_variant": gap_v,
                               "gap_change": None if gap_b is None else gap_v - gap_b,
                               "change_lo": lo, "change_hi": hi, "p_value": p, "status": status})
    schema = {"base": pl.String, "variant": pl.String, "role": pl.String, "q_label": pl.String,
              "subset": pl.String, "factor": pl.String, "level": pl.String, "reference": pl.String,
              "n_matched": pl.Int64, "n_dropped": pl.Int64, "gap_base": pl.Float64, "gap_variant": pl.Float64,
              "gap_change": pl.Float64, "change_lo": pl.Float64, "change_hi": pl.Float64, "p_value": pl.Float64,
              "status": pl.String}
    out = pl.DataFrame([{k: r[k] for k in schema} for r in rows], schema=schema)
    magnitude = pl.col("gap_variant").abs() - pl.col("gap_base").abs()
    return out.with_columns(
        pl.when(magnitude > 0).then(pl.lit("wider")).when(magnitude < 0).then(pl.lit("narrower"))
        .when(magnitude == 0).then(pl.lit("no change")).alias("direction"),
    )
