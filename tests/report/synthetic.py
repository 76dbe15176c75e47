"""A small synthetic analysis directory with exactly the columns of docs/analysis.md.

2 bases x 2 quantization labels (+ one control of the first base) on 3 datasets: BBQ
(ambig and disambig analyzed apart), CEB-Recognition (subsets S and T, closed) and FMT10K
(open, with generations). Values are drawn from a seeded generator to look like real runs:
4-bit flips more than 8-bit, uncertain questions flip more, a few tests are significant.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl

#: Every table's columns, in order, as docs/analysis.md lists them (``rows`` is not written).
CONTRACT: dict[str, list[str]] = {
    "models": ["model", "base", "role", "method", "scheme", "w_bits", "a_bits", "smoothquant", "q_label",
               "pair_source", "engine", "dtype", "device", "temperature", "seed", "system_prompt"],
    "flips": ["base", "variant", "role", "q_label", "dataset", "subset", "context_condition", "axis", "n",
              "n_flipped", "flip_rate", "flip_rate_lo", "flip_rate_hi",
              "n_bias_flipped", "bias_flip_rate", "bias_flip_rate_lo", "bias_flip_rate_hi",
              "n_unb_to_b", "unb_to_b_rate", "unb_to_b_rate_lo", "unb_to_b_rate_hi",
              "n_b_to_unb", "b_to_unb_rate", "b_to_unb_rate_lo", "b_to_unb_rate_hi",
              "mean_entropy_base", "mean_entropy_variant", "mean_entropy_diff",
              "control_flip_rate", "control_bias_flip_rate", "p_vs_control"],
    "uncertainty": ["dataset", "subset", "context_condition", "entropy_bin", "num_choices", "n_rows",
                    "pct_questions", "pct_flipped", "pct_bias_flipped"],
    "question_flips": ["dataset", "subset", "context_condition", "question_id", "n_variants", "flip_rate",
                       "bias_flip_rate"],
    "significance": ["base", "variant", "role", "q_label", "dataset", "subset", "context_condition", "axis",
                     "metric", "n", "value_base", "value_variant", "diff", "ci_lo", "ci_hi", "p_value", "status",
                     "cohens_dz", "direction", "p_adj_pooled", "significant_pooled", "p_adj_dataset",
                     "significant_dataset", "flip_rate"],
    "groups": ["level", "level_model", "dataset", "subset", "context_condition", "group", "n_questions", "n_rows",
               "pct_flipped", "pct_bias_flipped", "pct_unb_to_b", "pct_b_to_unb", "diff_unb_to_b"],
    "rankings": ["dataset", "subset", "context_condition", "metric", "q_label", "base", "value_base", "lo_base",
                 "hi_base", "rank_base", "variant", "value_variant", "lo_variant", "hi_variant", "rank_variant",
                 "rank_change"],
    "entropy_hist": ["dataset", "subset", "context_condition", "flipped", "bin_lo", "bin_hi", "count", "density"],
    "entropy_box": ["dataset", "subset", "context_condition", "who", "n", "mean", "q05", "q25", "q50", "q75",
                    "q95"],
    "entropy_diff_hist": ["dataset", "subset", "context_condition", "q_label", "bin_lo", "bin_hi", "count",
                          "density"],
    "text_changes": ["base", "variant", "role", "q_label", "dataset", "subset", "context_condition", "axis", "n",
                     "mean_word_count_change", "mean_lcp_words", "mean_lcp_prop", "mean_rougeL_precision",
                     "mean_rougeL_recall", "mean_rougeL_f"],
    "safety": ["model", "base", "role", "q_label", "dataset", "subset", "context_condition", "axis", "judge", "n_open",
               "n_judged", "n_judge_errors", "n_unsafe", "unsafe_rate", "unsafe_rate_lo", "unsafe_rate_hi",
               "mean_p_unsafe", "n_hate", "hate_rate", "hate_rate_lo", "hate_rate_hi"],
    "safety_flips": ["base", "variant", "role", "q_label", "method", "scheme", "w_bits", "a_bits", "smoothquant",
                     "dataset", "subset", "context_condition", "axis", "n", "unsafe_rate_base", "unsafe_rate_variant",
                     "n_safe_to_unsafe", "safe_to_unsafe_rate", "safe_to_unsafe_rate_lo", "safe_to_unsafe_rate_hi",
                     "n_unsafe_to_safe", "unsafe_to_safe_rate", "unsafe_to_safe_rate_lo", "unsafe_to_safe_rate_hi",
                     "net_unsafe_change", "n_p_unsafe", "mean_p_unsafe_change", "mean_abs_p_unsafe_change",
                     "p_mcnemar"],
}
BASES = ["qwen2.5-0.5b-instruct", "llama3.2-1b-instruct"]
QUANT = {"RTN W4A16": ("rtn", "w4a16", 4, 0.22), "RTN W8A16": ("rtn", "w8a16", 8, 0.05)}
CONTROL = "qwen2.5-0.5b-instruct-control"
#: (dataset, subset, context_condition, axes, choices or None for open, questions, metric)
UNITS = [
    ("BBQ", "BBQ", "ambig", ["age", "gender", "race"], 3, 360, "bbq_ambig_score"),
    ("BBQ", "BBQ", "disambig", ["age", "gender", "race"], 3, 360, "bbq_disambig_score"),
    ("CEB-Recognition", "CEB-Recognition-S", None, ["gender", "race"], 2, 240, "error_rate"),
    ("CEB-Recognition", "CEB-Recognition-T", None, ["gender", "race"], 2, 240, "error_rate"),
    ("FMT10K", "FMT10K-IM-S", None, ["gender", "religion"], None, 160, "unsafe_rate"),
]
GROUPS = {"BBQ": ["male", "female", "short", "old", "young", "poor"], "CEB-Recognition": ["male", "female", "black",
          "white"], "FMT10K": ["male", "muslim", "jewish"]}
TABLE_NAMES = list(CONTRACT)


def pairs() -> list[dict]:
    """(base, variant, role, q_label, flip propensity) of every compared model."""
    out = [{"base": b, "variant": f"{b}-{m}-{s}", "role": "variant", "q_label": q, "p": p * (1 + 0.3 * i)}
           for i, b in enumerate(BASES) for q, (m, s, _, p) in QUANT.items()]
    return out + [{"base": BASES[0], "variant": CONTROL, "role": "control", "q_label": "control", "p": 0.01}]


def _unit(u) -> dict:
    return {"dataset": u[0], "subset": u[1], "context_condition": u[2]}


def _wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.959964
    if n == 0:
        return math.nan, math.nan
    p = k / n
    mid, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (mid - half) / (1 + z * z / n), (mid + half) / (1 + z * z / n)


def models() -> pl.DataFrame:
    rows = [dict(model=b, base=b, role="base", method=None, scheme=None, w_bits=16, a_bits=16, smoothquant=False,
                 q_label=None, pair_source="base-option", engine="hf", dtype="bfloat16", device="cuda",
                 temperature=0.0, seed=0, system_prompt=None) for b in BASES]
    for p in pairs():
        meth = QUANT.get(p["q_label"])
        rows.append(dict(model=p["variant"], base=p["base"], role=p["role"], method=meth[0] if meth else None,
                         scheme=meth[1] if meth else None, w_bits=meth[2] if meth else 16, a_bits=16,
                         smoothquant=False, q_label=p["q_label"], pair_source="card" if meth else "pair",
                         engine="vllm" if p["base"] == BASES[1] else "hf", dtype="bfloat16", device="cuda",
                         temperature=0.0, seed=0, system_prompt=None))
    return pl.DataFrame(rows, schema_overrides={"method": pl.String, "scheme": pl.String, "q_label": pl.String,
                                                "system_prompt": pl.String})


def flips(rng: np.random.Generator) -> pl.DataFrame:
    rows = []
    for u in UNITS:
        for p in pairs():
            for axis in [*u[3], "(all)"]:
                n = u[5] if axis == "(all)" else u[5] // len(u[3])
                k = int(rng.binomial(n, p["p"]))
                kb = int(rng.binomial(k, 0.6))
                ku = int(rng.binomial(kb, 0.55))
                row = {"base": p["base"], "variant": p["variant"], "role": p["role"], "q_label": p["q_label"],
                       **_unit(u), "axis": axis, "n": n}
                for name, c in (("flip", k), ("bias_flip", kb), ("unb_to_b", ku), ("b_to_unb", kb - ku)):
                    lo, hi = _wilson(c, n)
                    row |= {f"n_{name}ped" if name in ("flip", "bias_flip") else f"n_{name}": c,
                            f"{name}_rate": c / n, f"{name}_rate_lo": lo, f"{name}_rate_hi": hi}
                hb = float(rng.uniform(0.2, 0.5)) if u[4] else None
                row |= {"mean_entropy_base": hb, "mean_entropy_variant": hb and hb + p["p"] / 4,
                        "mean_entropy_diff": hb and p["p"] / 4,
                        "control_flip_rate": 0.01 if p["base"] == BASES[0] else None,
                        "control_bias_flip_rate": 0.006 if p["base"] == BASES[0] else None,
                        "p_vs_control": float(rng.uniform(0, 0.01)) if p["base"] == BASES[0] else None}
                rows.append(row)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    return frame.select(CONTRACT["flips"])


def uncertainty() -> pl.DataFrame:
    rows = []
    for u in UNITS:
        if u[4] is None:
            continue
        n_rows = 4 * u[5]
        for b, share, flip in (("low", 0.55, 4.0), ("medium", 0.3, 18.0), ("high", 0.15, 41.0)):
            rows.append({**_unit(u), "entropy_bin": b, "num_choices": u[4], "n_rows": int(n_rows * share),
                         "pct_questions": 100 * share, "pct_flipped": flip, "pct_bias_flipped": flip * 0.6})
    return pl.DataFrame(rows)


def question_flips(rng: np.random.Generator) -> pl.DataFrame:
    rows = []
    for u in UNITS:
        propensity = rng.beta(0.4, 2.5, size=u[5])
        k = rng.binomial(4, propensity)
        for i in range(u[5]):
            rows.append({**_unit(u), "question_id": f"{u[1]}-{i:04d}", "n_variants": 4, "flip_rate": k[i] / 4,
                         "bias_flip_rate": rng.binomial(k[i], 0.6) / 4})
    return pl.DataFrame(rows)


def _bh(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1)
    out = np.empty_like(adj)
    out[order] = adj
    return out


def significance(rng: np.random.Generator) -> pl.DataFrame:
    rows = []
    for u in UNITS:
        for p in pairs():
            for axis in [*u[3], "(all)"]:
                n = u[5] if axis == "(all)" else u[5] // len(u[3])
                vb = float(rng.uniform(0.05, 0.4))
                shift = float(rng.normal(0, 0.06 if p["q_label"] == "RTN W4A16" else 0.01))
                dz = shift / 0.2
                pv = max(1e-3, math.erfc(abs(dz) * math.sqrt(n) / math.sqrt(2)))
                status = "untested: n < 10" if (u[1] == "FMT10K-IM-S" and axis == "religion"
                                                and p["base"] == BASES[1]) else "tested"
                rows.append({"base": p["base"], "variant": p["variant"], "role": p["role"], "q_label": p["q_label"],
                             **_unit(u), "axis": axis, "metric": u[6], "n": n, "value_base": vb,
                             "value_variant": vb + shift, "diff": shift, "ci_lo": shift - 0.03, "ci_hi": shift + 0.03,
                             "p_value": pv, "status": status, "cohens_dz": dz,
                             "direction": "more biased" if shift > 0 else "less biased",
                             "flip_rate": float(np.clip(rng.normal(p["p"], 0.03), 0, 1))})
    frame = pl.DataFrame(rows)
    tested = frame["status"] == "tested"
    p_all = np.full(frame.height, np.nan)
    p_all[tested.to_numpy()] = _bh(frame.filter(tested)["p_value"].to_numpy())
    frame = frame.with_columns(pl.Series("p_adj_pooled", p_all).fill_nan(None))
    per = []
    for _, part in frame.with_row_index("_i").group_by("subset", "context_condition"):
        t = part.filter(pl.col("status") == "tested")
        per.append(t.select("_i", pl.Series("p_adj_dataset", _bh(t["p_value"].to_numpy()))))
    frame = frame.with_row_index("_i").join(pl.concat(per), on="_i", how="left").drop("_i")
    return frame.with_columns((pl.col("p_adj_pooled") <= 0.05).fill_null(False).alias("significant_pooled"),
                              (pl.col("p_adj_dataset") <= 0.05).fill_null(False).alias("significant_dataset")
                              ).select(CONTRACT["significance"])


def groups(rng: np.random.Generator) -> pl.DataFrame:
    rows = []
    variants = [p for p in pairs() if p["role"] == "variant"]
    levels = [("all", None, 4)] + [("base", b, 2) for b in BASES] + [("variant", p["variant"], 1) for p in variants]
    for u in UNITS:
        for g in GROUPS[u[0]]:
            nq = int(rng.integers(50, 120))
            tilt = float(rng.normal(0, 3))
            for level, model, k in levels:
                u2b = max(0.0, float(rng.normal(6 + tilt, 1.5)))
                b2u = max(0.0, float(rng.normal(6 - tilt, 1.5)))
                rows.append({"level": level, "level_model": model, **_unit(u), "group": g, "n_questions": nq,
                             "n_rows": nq * k, "pct_flipped": (u2b + b2u) * 1.6, "pct_bias_flipped": u2b + b2u,
                             "pct_unb_to_b": u2b, "pct_b_to_unb": b2u, "diff_unb_to_b": u2b - b2u})
    return pl.DataFrame(rows, schema_overrides={"level_model": pl.String})


def rankings(rng: np.random.Generator) -> pl.DataFrame:
    rows = []
    for u in UNITS:
        for q in QUANT:
            vals = {b: float(rng.uniform(0.1, 0.5)) for b in BASES}
            qvals = {b: v + float(rng.normal(0, 0.08)) for b, v in vals.items()}
            rb = {b: i + 1 for i, b in enumerate(sorted(BASES, key=vals.get))}
            rv = {b: i + 1 for i, b in enumerate(sorted(BASES, key=qvals.get))}
            for b in BASES:
                rows.append({**_unit(u), "metric": u[6], "q_label": q, "base": b, "value_base": vals[b],
                             "lo_base": vals[b] - 0.02, "hi_base": vals[b] + 0.02, "rank_base": rb[b],
                             "variant": f"{b}-{QUANT[q][0]}-{QUANT[q][1]}", "value_variant": qvals[b],
                             "lo_variant": qvals[b] - 0.02, "hi_variant": qvals[b] + 0.02, "rank_variant": rv[b],
                             "rank_change": rv[b] - rb[b]})
    return pl.DataFrame(rows)


def _hist(samples: np.ndarray, lo: float, hi: float, bins: int) -> list[dict]:
    counts, edges = np.histogram(np.clip(samples, lo, hi), bins=bins, range=(lo, hi))
    width = (hi - lo) / bins
    return [{"bin_lo": float(edges[i]), "bin_hi": float(edges[i + 1]), "count": int(c),
             "density": float(c / (counts.sum() * width))} for i, c in enumerate(counts) if c > 0]


def entropy_tables(rng: np.random.Generator) -> dict[str, pl.DataFrame]:
    hist, box, diff = [], [], []
    for u in (u for u in UNITS if u[4] is not None):
        n = 4 * u[5]
        base = rng.beta(1.2, 3.0, size=n)
        flipped = rng.random(n) < 0.05 + 0.5 * base
        for f in (False, True):
            hist += [{**_unit(u), "flipped": f, **h} for h in _hist(base[flipped == f], 0.0, 1.0, 20)]
        for who, h in (("base", base[: u[5]]), ("RTN W4A16", base + rng.normal(0.03, 0.1, n)),
                       ("RTN W8A16", base + rng.normal(0.005, 0.03, n))):
            h = np.clip(h, 0, 1)
            box.append({**_unit(u), "who": who, "n": len(h), "mean": float(h.mean()),
                        **{f"q{q:02d}": float(np.quantile(h, q / 100)) for q in (5, 25, 50, 75, 95)}})
        for q, sd in (("RTN W4A16", 0.12), ("RTN W8A16", 0.04)):
            diff += [{**_unit(u), "q_label": q, **h} for h in _hist(rng.normal(0, sd, n), -1.0, 1.0, 50)]
    cc = {"context_condition": pl.String}
    return {"entropy_hist": pl.DataFrame(hist, schema_overrides=cc),
            "entropy_box": pl.DataFrame(box, schema_overrides=cc),
            "entropy_diff_hist": pl.DataFrame(diff, schema_overrides=cc)}


def text_changes(rng: np.random.Generator) -> pl.DataFrame:
    rows = []
    for u in (u for u in UNITS if u[4] is None):
        for p in pairs():
            for axis in [*u[3], "(all)"]:
                n = u[5] if axis == "(all)" else u[5] // len(u[3])
                f = float(np.clip(0.85 - 2 * p["p"] + rng.normal(0, 0.02), 0, 1))
                rows.append({"base": p["base"], "variant": p["variant"], "role": p["role"], "q_label": p["q_label"],
                             **_unit(u), "axis": axis, "n": n, "mean_word_count_change": float(rng.normal(-3, 4)),
                             "mean_lcp_words": 40 * f, "mean_lcp_prop": f * 0.8, "mean_rougeL_precision": f,
                             "mean_rougeL_recall": f - 0.02, "mean_rougeL_f": f - 0.01})
    return pl.DataFrame(rows, schema_overrides={"context_condition": pl.String})


def _rate(prefix: str, k: int, n: int) -> dict:
    lo, hi = _wilson(k, n)
    return {f"n_{prefix}": k, f"{prefix}_rate": k / n if n else None, f"{prefix}_rate_lo": lo, f"{prefix}_rate_hi": hi}


def safety(rng: np.random.Generator) -> pl.DataFrame:
    """Per model (bases included) on the open dataset: about 8% unsafe answers, more after 4-bit quantization."""
    meta = models().select("model", "base", "role", "q_label")
    propensity = {p["variant"]: p["p"] for p in pairs()}
    rows = []
    for u in (u for u in UNITS if u[4] is None):
        for m in meta.iter_rows(named=True):
            for axis in [*u[3], "(all)"]:
                n = u[5] if axis == "(all)" else u[5] // len(u[3])
                errors = int(rng.binomial(n, 0.01))
                unsafe = int(rng.binomial(n - errors, 0.08 + propensity.get(m["model"], 0.0) / 4))
                rate = _rate("unsafe", unsafe, n - errors)
                rows.append({**m, **_unit(u), "axis": axis, "judge": "llama-guard-3-8b", "n_open": n,
                             "n_judged": n - errors, "n_judge_errors": errors, **rate,
                             "mean_p_unsafe": float(rate["unsafe_rate"] * 0.9),
                             **_rate("hate", int(rng.binomial(unsafe, 0.4)), n - errors)})
    return pl.DataFrame(rows, schema_overrides={"context_condition": pl.String, "q_label": pl.String})


def safety_flips(rng: np.random.Generator) -> pl.DataFrame:
    meta = models().select(pl.col("model").alias("variant"), "method", "scheme", "w_bits", "a_bits", "smoothquant")
    rows = []
    for u in (u for u in UNITS if u[4] is None):
        for p in pairs():
            for axis in [*u[3], "(all)"]:
                n = u[5] if axis == "(all)" else u[5] // len(u[3])
                s2u, u2s = int(rng.binomial(n, p["p"] / 3)), int(rng.binomial(n, p["p"] / 8))
                rows.append({"base": p["base"], "variant": p["variant"], "role": p["role"], "q_label": p["q_label"],
                             **_unit(u), "axis": axis, "n": n, "unsafe_rate_base": 0.08,
                             "unsafe_rate_variant": 0.08 + (s2u - u2s) / n, **_rate("safe_to_unsafe", s2u, n),
                             **_rate("unsafe_to_safe", u2s, n), "net_unsafe_change": (s2u - u2s) / n, "n_p_unsafe": n,
                             "mean_p_unsafe_change": float(rng.normal(0.02, 0.01)),
                             "mean_abs_p_unsafe_change": float(rng.uniform(0.05, 0.1)),
                             "p_mcnemar": float(rng.uniform(0, 0.2))})
    return pl.DataFrame(rows, schema_overrides={"context_condition": pl.String}).join(meta, on="variant", how="left")


def build_tables(seed: int = 7) -> dict[str, pl.DataFrame]:
    """Every table of the contract, columns in contract order."""
    rng = np.random.default_rng(seed)
    tables = {"models": models(), "flips": flips(rng), "uncertainty": uncertainty(),
              "question_flips": question_flips(rng), "significance": significance(rng), "groups": groups(rng),
              "rankings": rankings(rng), **entropy_tables(rng), "text_changes": text_changes(rng),
              "safety": safety(rng), "safety_flips": safety_flips(rng)}
    return {name: tables[name].select(cols) for name, cols in CONTRACT.items()}


META = {
    "results": "/data/runs/r1",
    "data": "/data/prepared",
    "options": {"n_permutations": 1000, "n_bootstrap": 1000, "seed": 0, "min_group_questions": 50,
                "min_test_questions": 10},
    "pairs": {p["variant"]: {"base": p["base"], "role": p["role"], "source": "card"} for p in pairs()},
    "warnings": ["llama3.2-1b-instruct was scored with engine hf but its variants with vllm: "
                 "differences may come from the engine <not only quantization>"],
    "provenance": {"packages": {"ray-bench": "0.1.0", "polars": "2.1.0", "vllm": None},
                   "git": {"commit": "0123456789abcdef", "dirty": False}, "python": "3.11.9",
                   "platform": "Linux", "host": "node1", "recorded_at": "2025-01-01T00:00:00+00:00"},
}


def write_analysis_dir(directory: Path, tables: dict[str, pl.DataFrame] | None = None,
                       meta: dict | None = None) -> Path:
    """Write ``tables`` as Parquet + CSV and ``analysis.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in (tables if tables is not None else build_tables()).items():
        frame.write_parquet(directory / f"{name}.parquet")
        frame.write_csv(directory / f"{name}.csv")
    (directory / "analysis.json").write_text(json.dumps(meta if meta is not None else META, indent=2))
    return directory
