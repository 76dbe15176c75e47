"""Read an analysis directory (`ray-bench analyze --out DIR`) for the report.

Every table is read from its Parquet file; the report needs only the columns listed in
:data:`REQUIRED_TABLES` / :data:`OPTIONAL_TABLES` (docs/analysis.md has them all).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_bench.analysis.keys import DATASET_KEYS, PAIR_KEYS
from ray_bench.errors import ResultsError
from ray_bench.report.fig_reference import REFERENCE_TABLE_COLUMNS

if TYPE_CHECKING:
    import polars as pl

_KEYS = tuple(DATASET_KEYS)
_PAIR = tuple(PAIR_KEYS)
_HIST = (*_KEYS, "bin_lo", "bin_hi", "count", "density")

#: Tables the report cannot do without, and the columns it reads from each.
REQUIRED_TABLES: dict[str, tuple[str, ...]] = {
    "models": ("model", "base", "role", "q_label", "engine", "dtype"),
    "flips": (*_PAIR, *_KEYS, "axis", "n", "n_flipped", "flip_rate", "n_bias_flipped", "bias_flip_rate",
              "control_flip_rate"),
    "uncertainty": (*_KEYS, "entropy_bin", "num_choices", "n_rows", "pct_questions", "pct_flipped",
                    "pct_bias_flipped"),
    "question_flips": (*_KEYS, "question_id", "n_variants", "flip_rate"),
    "significance": (*_PAIR, *_KEYS, "axis", "metric", "n", "status", "cohens_dz", "direction",
                     "significant_pooled", "significant_dataset", "flip_rate"),
    "entropy_hist": (*_HIST, "flipped"),
    "entropy_box": (*_KEYS, "who", "n", "mean", "q05", "q25", "q50", "q75", "q95"),
    "entropy_diff_hist": (*_HIST, "q_label"),
}
#: Tables that may be absent (their figures are then skipped).
OPTIONAL_TABLES: dict[str, tuple[str, ...]] = {
    "groups": ("level", "level_model", *_KEYS, "group", "n_questions", "n_rows", "pct_flipped",
               "pct_bias_flipped", "pct_unb_to_b", "pct_b_to_unb", "diff_unb_to_b"),
    "rankings": (*_KEYS, "metric", "q_label", "base", "value_base", "lo_base", "hi_base", "rank_base", "variant",
                 "value_variant", "lo_variant", "hi_variant", "rank_variant", "rank_change"),
    "text_changes": (*_PAIR, *_KEYS, "axis", "n", "mean_word_count_change", "mean_lcp_prop", "mean_rougeL_f"),
    "safety": ("model", "base", "role", "q_label", *_KEYS, "axis", "n_open", "n_judged", "n_judge_errors",
               "unsafe_rate", "unsafe_rate_lo", "unsafe_rate_hi", "mean_p_unsafe", "hate_rate"),
    "safety_flips": (*_PAIR, *_KEYS, "axis", "n", "unsafe_rate_base", "unsafe_rate_variant", "safe_to_unsafe_rate",
                     "safe_to_unsafe_rate_lo", "safe_to_unsafe_rate_hi", "unsafe_to_safe_rate",
                     "unsafe_to_safe_rate_lo", "unsafe_to_safe_rate_hi", "net_unsafe_change",
                     "mean_p_unsafe_change", "p_mcnemar"),
    "early_stops": ("variant", "base", "dataset", "metric", "decision", "stop_shard", "stop_pairs", "e_value",
                    "threshold", "questions_not_run", "saved_fraction"),
    # The housing audit (docs/housing.md): present only when the run had Housing answers.
    **{f"housing_{name}": cols for name, cols in {
        "refusals": ("model", "subset", "factor", "level", "n", "n_answered", "n_no_score", "n_error",
                     "no_score_rate", "no_score_rate_lo", "no_score_rate_hi"),
        "levels": ("model", "subset", "factor", "level", "n", "n_scored", "mean", "q05", "q25", "median", "q75",
                   "q95"),
        "cells": ("model", "subset", "factor_a", "factor_b", "level_a", "level_b", "n_scored", "mean"),
        "tests": ("model", "subset", "factor", "n", "n_levels", "h", "p_value", "epsilon_squared",
                  "p_no_score_chi2", "status"),
        "dunn": ("model", "subset", "factor", "level_a", "level_b", "p_adjusted", "correction", "significant"),
        "paired": ("model", "subset", "factor", "level", "reference", "n_pairs", "n_scored", "n_dropped",
                   "mean_diff", "diff_lo", "diff_hi", "median_diff", "p_value", "no_score_rate_diff",
                   "p_no_score_mcnemar", "status"),
        "quant_gaps": ("base", "variant", "q_label", "subset", "factor", "level", "reference", "n_matched",
                       "gap_base", "gap_variant", "gap_change", "change_lo", "change_hi", "p_value", "direction",
                       "status"),
    }.items()},
}
# The gap to a reference distribution (docs/reference-gap.md): present only for an Occupations prompt set.
OPTIONAL_TABLES.update(REFERENCE_TABLE_COLUMNS)
META_FILE = "analysis.json"


@dataclass(frozen=True)
class AnalysisInputs:
    """The tables of an analysis directory and its ``analysis.json``."""

    directory: Path
    tables: dict[str, pl.DataFrame]
    meta: dict[str, Any]
    missing: tuple[str, ...] = field(default=())  #: optional tables that are absent


def _hint(directory: Path) -> str:
    return (f"Run `ray-bench analyze --results RUN_DIR --out {directory}` first, "
            "then `ray-bench report --analysis` that directory.")


def read_table(directory: Path, name: str, columns: tuple[str, ...], hint: str | None = None) -> pl.DataFrame:
    """``<directory>/<name>.parquet``, checked to have ``columns``.

    ``hint``: the next step an error names (default: run ``analyze``, then ``report``).

    Raises:
        ResultsError: the file is missing, unreadable or lacks a column (names the file).
    """
    import polars as pl

    hint = hint or _hint(directory)
    path = directory / f"{name}.parquet"
    if not path.is_file():
        raise ResultsError(f"analysis table {path} is missing", hint=hint)
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several kinds for corrupt files
        raise ResultsError(f"analysis table {path} cannot be read: {exc}".replace("\n", " "), hint=hint) from exc
    lacking = [c for c in columns if c not in frame.columns]
    if lacking and frame.height == 0:  # an empty table may be written without columns
        return pl.DataFrame(schema={**frame.schema, **{c: pl.String for c in lacking}})
    if not lacking:  # keys compare across tables: a column of only nulls may be stored as type Null
        frame = frame.with_columns(pl.col(c).cast(pl.String) for c in _KEYS if c in frame.columns)
    if lacking:
        raise ResultsError(
            f"analysis table {path} lacks the column(s) {', '.join(lacking)}; it was written by another "
            "version of `ray-bench analyze`", hint=hint)
    return frame


def read_meta(directory: Path, hint: str | None = None) -> dict[str, Any]:
    """``analysis.json`` as a dict (``hint`` as in :func:`read_table`).

    Raises:
        ResultsError: it is missing or not a JSON object.
    """
    hint = hint or _hint(directory)
    path = directory / META_FILE
    if not path.is_file():
        raise ResultsError(f"{path} is missing (provenance of the analysis)", hint=hint)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path} cannot be read: {exc}", hint=hint) from exc
    if not isinstance(meta, dict):
        raise ResultsError(f"{path} is not a JSON object", hint=hint)
    return meta


def read_analysis(directory: str | Path) -> AnalysisInputs:
    """Every table the report uses (optional ones when present) and ``analysis.json``.

    Raises:
        ResultsError: the directory, a required table or ``analysis.json`` is missing or unreadable.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultsError(f"analysis directory {directory} does not exist", hint=_hint(directory))
    tables = {name: read_table(directory, name, cols) for name, cols in REQUIRED_TABLES.items()}
    missing = []
    for name, cols in OPTIONAL_TABLES.items():
        if (directory / f"{name}.parquet").is_file():
            tables[name] = read_table(directory, name, cols)
        else:
            missing.append(name)
    return AnalysisInputs(directory, tables, read_meta(directory), tuple(missing))
