"""The reference-gap tables of a run's Occupations answers (docs/reference-gap.md).

Input: the run's rows joined with their questions (``ray_bench.results.scan_run``; the
Occupations rows carry the occupation in ``group``), the model table and the reference table
the prompts were made from. Output (:func:`reference_gap_tables`), Polars frames:

* ``reference_gap``: per (model, attribute, occupation) counts of every outcome, TV with its
  interval, max deviation, JS, G-test (asymptotic, Monte Carlo and Holm-adjusted p), the noise
  floor at that N, TV above the floor, TV to the uniform distribution (over-correction check);
* ``reference_gap_categories``: per category the count, share, reference share, signed gap, ratio;
* ``reference_gap_summary``: per (model, attribute) over occupations: mean, employment-weighted
  and worst TV, mean floor, share above the floor, share rejected by the G-test;
* ``reference_gap_pairs``: per (base, variant, attribute, occupation) the paired change of TV
  with its bootstrap CI and permutation p-value, plus an ``occupation = "(all)"`` row per
  (pair, attribute): mean change, its stratified CI and p-value, the employment-weighted change,
  the Wilcoxon signed-rank p-value over occupations and the counts of occupations that got
  worse / better.

Pure Polars/NumPy (the statistics are :mod:`ray_bench.analysis.reference_gap`), no I/O.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl

from ray_bench.analysis import reference_gap as rg
from ray_bench.analysis.extract import UNMATCHED, UNPARSED, extract_all, get_extractor
from ray_bench.analysis.stats import holm_adjust, seed_for
from ray_bench.datasets.occupations import DATASET
from ray_bench.datasets.reference import ReferenceTable
from ray_bench.errors import AnalysisError

ALL = "(all)"
ERROR = "error"
_MODEL_KEYS = ["model", "base", "role", "q_label"]
_PAIR_KEYS = ["base", "variant", "role", "q_label"]
TABLE_NAMES = ("reference_gap", "reference_gap_categories", "reference_gap_summary", "reference_gap_pairs")


@dataclass(frozen=True)
class GapOptions:
    """Settings of the reference-gap tables (recorded by the caller with the analysis)."""

    extractor: str = "self_report"
    ci_method: str = "bootstrap"
    n_bootstrap: int = 1000
    n_permutations: int = 1000
    floor_draws: int = 10_000
    level: float = 0.95
    alpha: float = 0.05
    min_n: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ci_method not in rg.CI_METHODS:
            raise AnalysisError(f"unknown interval method {self.ci_method!r}",
                                hint=f"Use one of: {', '.join(rg.CI_METHODS)}.")
        if min(self.n_bootstrap, self.n_permutations, self.floor_draws) < 2 or not 0 < self.level < 1 \
                or not 0 < self.alpha < 1 or self.min_n < 1:
            raise AnalysisError(f"bad reference-gap settings: {self}",
                                hint="Use at least 2 draws, 0 < level < 1, 0 < alpha < 1 and min_n >= 1.")


def reference_gap_tables(rows: pl.LazyFrame, models: pl.DataFrame, reference: ReferenceTable,
                         options: GapOptions | None = None) -> dict[str, pl.DataFrame]:
    """The four reference-gap tables of the Occupations rows; ``{}`` when the run has none.

    Raises:
        AnalysisError: an answered occupation is not in ``reference``, or a question repeats.
    """
    options = options or GapOptions()
    answers = _answers(rows, models, reference)
    if answers.height == 0:
        return {}
    outcomes = _outcomes(answers, reference, options.extractor)
    per_model = _per_model(outcomes, answers, models, reference, options)
    return {
        "reference_gap": per_model["gap"],
        "reference_gap_categories": per_model["categories"],
        "reference_gap_summary": _summary(per_model["gap"], reference),
        "reference_gap_pairs": _pairs(outcomes, models, reference, options),
    }


def _answers(rows: pl.LazyFrame, models: pl.DataFrame, reference: ReferenceTable) -> pl.DataFrame:
    """The Occupations rows of the models in the model table: model, question_id, occupation, response, error."""
    frame = (rows.filter(pl.col("dataset") == DATASET)
             .select("model", "question_id", pl.col("group").alias("occupation"), "response", "error")
             .join(models.lazy().select("model"), on="model", how="semi").collect())
    known = set(reference.occupation_names())
    stray = sorted({o for o in frame["occupation"].to_list() if o not in known}, key=str)
    if stray:
        raise AnalysisError(
            f"occupation {stray[0]!r} of the Occupations answers is not in reference table {reference.name!r}",
            hint="Analyze with the reference table the dataset was made from (its copy Occupations.reference.json "
                 "beside Occupations.parquet).")
    dup = frame.group_by("model", "question_id").len().filter(pl.col("len") > 1)
    if dup.height:
        raise AnalysisError(f"question {dup['question_id'][0]!r} of model {dup['model'][0]!r} appears "
                            f"{dup['len'][0]} times in the results", hint="Rerun the duplicated shards.")
    return frame


def _outcomes(answers: pl.DataFrame, reference: ReferenceTable, extractor_name: str) -> pl.DataFrame:
    """Long form: model, question_id, occupation, attribute, outcome, category, code (K = no category)."""
    extractor = get_extractor(extractor_name)
    errors = answers["error"].to_list()
    texts = [None if e is not None else t for t, e in zip(answers["response"].to_list(), errors)]
    parts = []
    for attribute in reference.attributes:
        found = extract_all(texts, attribute, extractor)
        index = {c: i for i, c in enumerate(attribute.categories)}
        outcome = [ERROR if e is not None else x.outcome for x, e in zip(found, errors)]
        category = [x.category if e is None else None for x, e in zip(found, errors)]
        parts.append(answers.select("model", "question_id", "occupation").with_columns(
            pl.lit(attribute.name).alias("attribute"), pl.Series("outcome", outcome),
            pl.Series("category", category, dtype=pl.String),
            pl.Series("code", [index.get(c, len(index)) if c else len(index) for c in category], dtype=pl.Int64),
        ))
    return pl.concat(parts)


def _counts(codes: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(codes, minlength=k + 1)


def _floor(cache: dict, reference: ReferenceTable, attribute: str, row: int, n: int,
           options: GapOptions) -> rg.NoiseFloor | None:
    if n == 0:
        return None
    key = (attribute, row, n)
    if key not in cache:
        seed = seed_for(options.seed, "floor", reference.name, attribute, row, n)
        cache[key] = rg.noise_floor(reference.shares(attribute)[row], n, draws=options.floor_draws, seed=seed)
    return cache[key]


def _per_model(outcomes: pl.DataFrame, answers: pl.DataFrame, models: pl.DataFrame, reference: ReferenceTable,
               options: GapOptions) -> dict[str, pl.DataFrame]:
    """``reference_gap`` and ``reference_gap_categories`` rows, one occupation at a time."""
    distinct = {(r["model"], r["occupation"]): r["n"] for r in answers.group_by("model", "occupation")
                .agg(pl.col("response").drop_nulls().n_unique().alias("n")).iter_rows(named=True)}
    weights = reference.weights()
    cache: dict = {}
    gap, cats = [], []
    for (model, attribute, occupation), group in outcomes.group_by("model", "attribute", "occupation"):
        attr = reference.attribute(attribute)
        row = reference.occupation_names().index(occupation)
        q, k = reference.shares(attribute)[row], len(attr.categories)
        counts = _counts(group["code"].to_numpy(), k)
        kinds = group["outcome"].value_counts()
        tally = dict(zip(kinds["outcome"].to_list(), kinds["count"].to_list()))
        floor = _floor(cache, reference, attribute, row, int(counts[:k].sum()), options)
        record = _occupation_record(counts, q, attr.categories, floor, tally.get(ERROR, 0),
                                    seed_for(options.seed, "tv", model, attribute, occupation), options)
        gap.append({"model": model, "reference": reference.name, "attribute": attribute, "occupation": occupation,
                    "employment": None if weights is None else float(weights[row]), "n_answers": group.height,
                    "n_errors": tally.get(ERROR, 0), "n_unparsed": tally.get(UNPARSED, 0),
                    "n_unmatched": tally.get(UNMATCHED, 0), "n_distinct_responses": distinct[(model, occupation)],
                    **record})
        p = rg.proportions(counts[:k])
        diff, ratio = rg.signed_gaps(p, q)
        cats += [{"model": model, "reference": reference.name, "attribute": attribute, "occupation": occupation,
                  "category": c, "count": int(counts[i]), "share": float(p[i]), "reference_share": float(q[i]),
                  "gap": float(diff[i]), "ratio": float(ratio[i])} for i, c in enumerate(attr.categories)]
    gap_frame = _with_holm(pl.DataFrame(gap, infer_schema_length=None), options.alpha)
    return {"gap": _in_table_order(_with_roles(gap_frame, models), reference),
            "categories": _in_table_order(_with_roles(pl.DataFrame(cats, infer_schema_length=None), models),
                                          reference)}


def _in_table_order(frame: pl.DataFrame, reference: ReferenceTable) -> pl.DataFrame:
    """Sorted by model, then attributes and occupations in the reference table's order (categories too)."""
    attributes = {a.name: i for i, a in enumerate(reference.attributes)}
    occupations = {o: i for i, o in enumerate(reference.occupation_names())}
    keys = [pl.col("attribute").replace_strict(attributes, return_dtype=pl.Int64).alias("_a")]
    if "occupation" in frame.columns:
        keys.append(pl.col("occupation").replace_strict(occupations, return_dtype=pl.Int64).alias("_o"))
    by = ["model", *(k.meta.output_name() for k in keys)]
    return frame.with_columns(keys).sort(by, maintain_order=True).drop(by[1:])


def _occupation_record(counts: np.ndarray, q: np.ndarray, categories: tuple[str, ...],
                       floor: rg.NoiseFloor | None, n_errors: int, seed: int, options: GapOptions) -> dict:
    """Every per-occupation statistic of one model (NaN / null where no answer has a category).

    ``unknown_rate``: answers without a category among those generated without an error.
    """
    k = len(categories)
    n = int(counts[:k].sum())
    p = rg.proportions(counts[:k])
    tv = float(rg.total_variation(p, q))
    lo, hi = rg.tv_interval(counts, q, method=options.ci_method, draws=options.n_bootstrap, level=options.level,
                            seed=seed)
    dev, top = rg.max_deviation(p, q)
    g = rg.g_test(counts[:k], q)
    answered = int(counts.sum()) - n_errors
    return {
        "n": n, "unknown_rate": (answered - n) / answered if answered else float("nan"),
        "tv": tv, "tv_lo": lo, "tv_hi": hi, "max_dev": float(dev),
        "max_dev_category": categories[int(top)] if top >= 0 else None, "js": float(rg.js_divergence(p, q)),
        "g_stat": g.statistic, "g_df": g.df, "g_p": g.p_value,
        "g_p_mc": rg.monte_carlo_p(g.statistic, floor.g_null) if floor else float("nan"),
        "floor_mean": floor.mean if floor else float("nan"), "floor_q95": floor.q95 if floor else float("nan"),
        "tv_excess": tv - floor.mean if floor else float("nan"),
        "above_floor": bool(tv > floor.q95) if floor else None,
        "tv_uniform": float(rg.total_variation(p, np.full(k, 1.0 / k))),
    }


def _with_holm(gap: pl.DataFrame, alpha: float) -> pl.DataFrame:
    """``g_p_holm`` (Holm over the occupations of a model and attribute, Monte Carlo p) and ``g_reject``."""
    parts = []
    for _, part in gap.group_by("model", "attribute"):
        adjusted = holm_adjust(part["g_p_mc"].to_numpy())
        parts.append(part.with_columns(pl.Series("g_p_holm", adjusted)))
    out = pl.concat(parts)
    return out.with_columns(pl.when(pl.col("g_p_holm").is_nan()).then(None)
                            .otherwise(pl.col("g_p_holm") <= alpha).alias("g_reject"))


def _with_roles(frame: pl.DataFrame, models: pl.DataFrame) -> pl.DataFrame:
    roles = models.select(_MODEL_KEYS)
    joined = frame.join(roles, on="model", how="left")
    return joined.select(*_MODEL_KEYS, pl.exclude(_MODEL_KEYS))


def _summary(gap: pl.DataFrame, reference: ReferenceTable) -> pl.DataFrame:
    """Per (model, attribute): aggregates over the occupations with a categorized answer."""
    rows = []
    for keys, part in gap.group_by(*_MODEL_KEYS, "reference", "attribute"):
        part = part.sort("occupation")
        defined = part.filter(pl.col("n") > 0)
        weights = None if reference.weights() is None else part["employment"].to_numpy()
        agg = rg.aggregate(part["tv"].to_numpy(), weights)
        answered = int(part["n_answers"].sum() - part["n_errors"].sum())
        rows.append({
            **dict(zip([*_MODEL_KEYS, "reference", "attribute"], keys)), "n_occupations": agg.n,
            "n_answers": int(part["n_answers"].sum()), "n": int(part["n"].sum()),
            "unknown_rate": (answered - int(part["n"].sum())) / answered if answered else float("nan"),
            "mean_tv": agg.mean, "weighted_tv": agg.weighted, "worst_tv": agg.worst,
            "worst_occupation": part["occupation"][agg.worst_index] if agg.worst_index >= 0 else None,
            "mean_floor": _mean(defined["floor_mean"]), "mean_tv_excess": _mean(defined["tv_excess"]),
            "share_above_floor": _mean(defined["above_floor"].cast(pl.Float64)),
            "n_g_reject": int(defined["g_reject"].sum() or 0),
            "share_g_reject": _mean(defined["g_reject"].cast(pl.Float64)),
            "mean_tv_uniform": _mean(defined["tv_uniform"]),
        })
    return _in_table_order(pl.DataFrame(rows, infer_schema_length=None), reference)


def _mean(series: pl.Series) -> float:
    values = series.cast(pl.Float64).fill_nan(None).drop_nulls()
    return float(values.mean()) if values.len() else float("nan")


def _pairs(outcomes: pl.DataFrame, models: pl.DataFrame, reference: ReferenceTable,
           options: GapOptions) -> pl.DataFrame:
    """Per (pair, attribute): one row per occupation and the ``(all)`` row."""
    rows = []
    for pair in models.filter(pl.col("role") != "base").iter_rows(named=True):
        variant, base = pair["model"], pair["base"]
        keys = {"base": base, "variant": variant, "role": pair["role"], "q_label": pair["q_label"]}
        joined = (outcomes.filter(pl.col("model") == base)
                  .join(outcomes.filter(pl.col("model") == variant), on=["question_id", "attribute", "occupation"],
                        suffix="_variant"))
        for attribute in reference.attributes:
            part = joined.filter(pl.col("attribute") == attribute.name)
            rows += _pair_rows(part, keys, reference, attribute.name, options)
    schema = {**dict.fromkeys(_PAIR_KEYS, pl.String), "reference": pl.String, "attribute": pl.String,
              "occupation": pl.String, "n": pl.Int64, "tv_base": pl.Float64, "tv_variant": pl.Float64,
              "diff": pl.Float64, "ci_lo": pl.Float64, "ci_hi": pl.Float64, "p_value": pl.Float64,
              "status": pl.String, "weighted_diff": pl.Float64, "p_wilcoxon": pl.Float64,
              "n_worse": pl.Int64, "n_better": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def _pair_rows(part: pl.DataFrame, keys: dict, reference: ReferenceTable, attribute: str,
               options: GapOptions) -> list[dict]:
    k = len(reference.attribute(attribute).categories)
    shares, weights = reference.shares(attribute), reference.weights()
    rows, nulls, boots, used = [], [], [], []
    for row, occupation in enumerate(reference.occupation_names()):
        sub = part.filter(pl.col("occupation") == occupation)
        if sub.height == 0:
            continue
        joint = np.zeros((k + 1, k + 1), dtype=np.int64)
        np.add.at(joint, (sub["code"].to_numpy(), sub["code_variant"].to_numpy()), 1)
        metric = rg.tv_metric(shares[row])
        tv_b, tv_v = float(metric.statistic(joint.sum(axis=1))), float(metric.statistic(joint.sum(axis=0)))
        diff = tv_v - tv_b
        status = "undefined" if np.isnan(diff) else "tested" if sub.height >= options.min_n \
            else f"untested: n < {options.min_n}"
        record = {**keys, "reference": reference.name, "attribute": attribute, "occupation": occupation,
                  "n": sub.height, "tv_base": tv_b, "tv_variant": tv_v, "diff": diff, "ci_lo": float("nan"),
                  "ci_hi": float("nan"), "p_value": float("nan"), "status": status}
        if status == "tested":
            null, boot = rg.paired_tv_draws(joint, shares[row], n_permutations=options.n_permutations,
                                            n_bootstrap=options.n_bootstrap,
                                            seed=seed_for(options.seed, "pair", keys["variant"], attribute, occupation))
            record["p_value"] = rg.two_sided_p(diff, null)
            record["ci_lo"], record["ci_hi"] = rg.percentile_interval(boot, options.level)
            nulls.append(null)
            boots.append(boot)
            used.append((row, diff, tv_b, tv_v))
        rows.append(record)
    if used:
        rows.append(_pair_aggregate(keys, reference.name, attribute, used, nulls, boots, weights, part.height,
                                    options.level))
    return rows


def _pair_aggregate(keys: dict, reference: str, attribute: str, used: list, nulls: list, boots: list,
                    weights: np.ndarray | None, n: int, level: float) -> dict:
    """The ``(all)`` row: occupations are independent strata, so averaging the i-th draw of each
    occupation gives the i-th draw of the stratified permutation null / paired bootstrap of the mean."""
    index, diffs, tv_b, tv_v = (np.array(x) for x in zip(*used))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a draw undefined in every occupation
        null_mean, boot_mean = np.nanmean(np.stack(nulls), axis=0), np.nanmean(np.stack(boots), axis=0)
    mean = float(diffs.mean())
    lo, hi = rg.percentile_interval(boot_mean, level)
    weighted = float((weights[index] * diffs).sum() / weights[index].sum()) if weights is not None else float("nan")
    return {**keys, "reference": reference, "attribute": attribute, "occupation": ALL, "n": n,
            "tv_base": float(tv_b.mean()), "tv_variant": float(tv_v.mean()), "diff": mean, "ci_lo": lo, "ci_hi": hi,
            "p_value": rg.two_sided_p(mean, null_mean), "status": "tested", "weighted_diff": weighted,
            "p_wilcoxon": rg.wilcoxon_p(diffs), "n_worse": int((diffs > 0).sum()), "n_better": int((diffs < 0).sum())}


def gap_warnings(tables: dict[str, pl.DataFrame], reference: ReferenceTable) -> list[str]:
    """Lines for ``analysis.json``: an illustrative table, models whose K samples were all identical."""
    out = []
    if reference.illustrative:
        out.append(f"reference table {reference.name!r} is illustrative, not measured data: its gaps show the "
                   "method only")
    gap = tables.get("reference_gap")
    if gap is not None and gap.height:
        same = (gap.filter(pl.col("attribute") == reference.attributes[0].name)
                .group_by("model").agg(((pl.col("n_distinct_responses") <= 1) & (pl.col("n_answers") > 1)).all()
                                       .alias("all_same")).filter(pl.col("all_same")))
        for model in sorted(same["model"].to_list()):
            out.append(f"{model}: every occupation's Occupations samples are one identical answer (greedy decoding or "
                       "one seed for every request); rerun with --temperature > 0 and without --reference-decoding")
    return out


def noise_floor_table(reference: ReferenceTable, ns: list[int], *, draws: int = 10_000,
                      seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The TV noise floor of every (attribute, occupation) at each N, and its summary per (attribute, N).

    Draws are seeded as in :func:`reference_gap_tables`, so an analysis at the same N reports
    the same floor. Per occupation: ``floor_mean``, ``floor_q95``, ``floor_sd`` (simulated) and
    ``approx_mean`` (normal approximation); per (attribute, N): the mean over occupations of the
    mean and the 95th percentile, and the smallest and largest 95th percentile.
    """
    options = GapOptions(floor_draws=draws, seed=seed)
    cache: dict = {}
    rows = []
    for attribute in reference.attributes:
        shares = reference.shares(attribute.name)
        for row, occupation in enumerate(reference.occupation_names()):
            for n in ns:
                floor = _floor(cache, reference, attribute.name, row, n, options)
                rows.append({"reference": reference.name, "attribute": attribute.name, "occupation": occupation,
                             "n": n, "floor_mean": floor.mean, "floor_q95": floor.q95, "floor_sd": floor.sd,
                             "approx_mean": rg.approximate_floor(shares[row], n)})
    per = pl.DataFrame(rows)
    summary = (per.group_by("reference", "attribute", "n", maintain_order=True)
               .agg(pl.len().alias("n_occupations"), pl.col("floor_mean").mean().alias("mean_floor"),
                    pl.col("floor_q95").mean().alias("mean_q95"), pl.col("floor_q95").min().alias("min_q95"),
                    pl.col("floor_q95").max().alias("max_q95"), pl.col("approx_mean").mean().alias("mean_approx")))
    return per, summary


def has_occupations(rows: pl.LazyFrame) -> bool:
    """True when ``rows`` hold answers of the Occupations prompt set."""
    return rows.filter(pl.col("dataset") == DATASET).select(pl.len()).collect().item() > 0
