"""Every table of the analysis from one run's rows: the pure core of ``ray-bench analyze``.

Input: the run's rows joined with their questions (``ray_bench.results.scan_run``) and the
model table (:mod:`ray_bench.analysis.models`). Output: a dict of named Polars frames (see
docs/analysis.md). No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from ray_bench.analysis.entropy import entropy_box, entropy_diff_hist, entropy_hist
from ray_bench.analysis.fields import check_unique, closed_fields, open_fields
from ray_bench.analysis.flips import flip_table, pair_rows, question_flip_table, uncertainty_table
from ray_bench.analysis.groups import group_asymmetry, ranking_table
from ray_bench.analysis.housing import HousingOptions
from ray_bench.analysis.keys import DATASET_KEYS, PAIR_KEYS
from ray_bench.analysis.metrics import TestOptions, significance_table, stereoset_table
from ray_bench.analysis.safety import judged_pairs, safety_flip_table, safety_table
from ray_bench.errors import AnalysisError

if TYPE_CHECKING:
    from ray_bench.datasets.reference import ReferenceTable


@dataclass(frozen=True)
class StudyOptions:
    """Options of the whole analysis (recorded in ``analysis.json``)."""

    tests: TestOptions = field(default_factory=TestOptions)
    min_group_questions: int = 50
    text_metrics: bool = True
    housing: HousingOptions = field(default_factory=HousingOptions)
    #: The reference table of an Occupations prompt set (docs/reference-gap.md); ``None``: no gap tables.
    reference: ReferenceTable | None = None


def _per_model_audits(rows: pl.LazyFrame, options: StudyOptions) -> set[str]:
    """The audits in the rows that one model completes: ``housing``, ``reference`` (the gap to it)."""
    from ray_bench.analysis.housing import DATASET as HOUSING
    from ray_bench.datasets.occupations import DATASET as OCCUPATIONS

    present = set(rows.select(pl.col("dataset").unique()).collect().get_column("dataset").to_list())
    return {audit for audit, dataset, wanted in (("housing", HOUSING, True),
                                                 ("reference", OCCUPATIONS, options.reference is not None))
            if wanted and dataset in present}


def _audit_tables(rows: pl.LazyFrame, models: pl.DataFrame, options: StudyOptions,
                  audits: set[str]) -> dict[str, pl.DataFrame]:
    """The per-model audits' tables: housing (docs/housing.md) and the gap to the reference."""
    tables: dict[str, pl.DataFrame] = {}
    if "housing" in audits:
        tables |= _housing_tables(rows, models, options)
    if options.reference is not None:
        from ray_bench.analysis.reference_gap_tables import GapOptions, reference_gap_tables

        t = options.tests
        tables |= reference_gap_tables(rows, models, options.reference, GapOptions(
            n_bootstrap=t.n_bootstrap, n_permutations=t.n_permutations, seed=t.seed, min_n=t.min_n))
    return tables


def _open_rows(rows: pl.LazyFrame, models: pl.DataFrame) -> pl.LazyFrame | None:
    """Paired open-ended rows, computed once (text metrics and safety flips read them), or None."""
    paired = pair_rows(open_fields(rows), models).collect()
    return paired.lazy() if paired.height else None


def text_change_table(paired_open: pl.LazyFrame) -> pl.DataFrame:
    """Mean text change between base and variant answers per (pair, dataset, axis)."""
    from ray_bench.analysis.flips import with_all_axes
    from ray_bench.analysis.text import text_change_columns

    frame = paired_open.select(*PAIR_KEYS, *DATASET_KEYS, "axis", "response_base", "response_variant").collect()
    measured = text_change_columns(frame)
    return (
        with_all_axes(measured.lazy()).group_by([*PAIR_KEYS, *DATASET_KEYS, "axis"]).agg(
            pl.len().alias("n"),
            pl.col("word_count_change").mean().alias("mean_word_count_change"),
            pl.col("lcp_words").mean().alias("mean_lcp_words"),
            pl.col("lcp_prop").mean().alias("mean_lcp_prop"),
            pl.col("rougeL_precision").mean().alias("mean_rougeL_precision"),
            pl.col("rougeL_recall").mean().alias("mean_rougeL_recall"),
            pl.col("rougeL_f").mean().alias("mean_rougeL_f"),
        ).sort([*PAIR_KEYS, *DATASET_KEYS, "axis"], nulls_last=True).collect()
    )


def _safety_tables(rows: pl.LazyFrame, paired_open: pl.LazyFrame | None,
                   models: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """``safety`` (of the models in the model table, with their base, role and q_label) and ``safety_flips``."""
    roles = models.select("model", "base", "role", "q_label")
    # Unpaired models are left out of every other table (analyze warns): here too.
    per_model = safety_table(rows.join(roles.lazy().select("model"), on="model", how="semi"))
    per_model = per_model.join(roles, on="model", how="left").select("model", "base", "role", "q_label",
                                                                     pl.exclude("model", "base", "role", "q_label"))
    flips = safety_flip_table(paired_open) if paired_open is not None else pl.DataFrame()
    return {"safety": per_model, "safety_flips": flips}


#: Quantization metadata every per-variant table carries (from the model table).
QUANT_COLUMNS = ["method", "scheme", "w_bits", "a_bits", "smoothquant"]


def with_quant_metadata(table: pl.DataFrame, models: pl.DataFrame) -> pl.DataFrame:
    """``table`` with the variant's method, scheme, bits and SmoothQuant flag after ``q_label``."""
    meta = models.select(pl.col("model").alias("variant"), *QUANT_COLUMNS)
    joined = table.drop(QUANT_COLUMNS, strict=False).join(meta, on="variant", how="left")
    at = joined.columns.index("q_label") + 1
    rest = [c for c in joined.columns if c not in QUANT_COLUMNS]
    return joined.select(rest[:at] + QUANT_COLUMNS + rest[at:])


def analyze_frames(rows: pl.LazyFrame, models: pl.DataFrame, options: StudyOptions | None = None) -> dict[str, pl.DataFrame]:
    """All analysis tables of one run.

    Args:
        rows: Result rows joined with their questions, every model.
        models: The model table; variants and controls are paired with their ``base``.
        options: Test and grouping options.

    Returns:
        ``{"models", "rows", "flips", "uncertainty", "question_flips", "significance", "stereoset", "groups",
        "rankings", "entropy_hist", "entropy_box", "entropy_diff_hist"}``; when open-ended
        answers exist, ``text_changes``; when the rows carry a judgement (``is_safe``),
        ``safety`` and ``safety_flips``; when the rows hold Housing answers, the ``housing_*`` tables
        of :func:`ray_bench.analysis.housing.housing_tables` (then a run without any base/variant
        pair, e.g. of one model, is analyzed too: its paired tables are empty).

    Raises:
        AnalysisError: duplicated questions, or no question answered by both a base and a variant
            (and no Housing answer).
    """
    options = options or StudyOptions()
    check_unique(rows)
    # Every table below reads the pairs: compute each join once. Closed first, so that the
    # closed join's transient peak does not stack on the held open answers.
    closed = pair_rows(closed_fields(rows), models).collect().lazy()
    paired_open = _open_rows(rows, models)
    judged = "is_safe" in rows.collect_schema().names()
    # Only open answers judged on both sides are comparable: an unlabelled one is no flip and not safe.
    usable_open = judged_pairs(paired_open) if judged and paired_open is not None else None
    paired = pl.concat([closed, usable_open], how="diagonal_relaxed") if usable_open is not None else closed
    has_pairs = paired.select(pl.len()).collect().item() > 0
    audits = _per_model_audits(rows, options)
    if not has_pairs and not audits:
        raise AnalysisError(
            "no closed question was answered by both a variant and its base",
            hint="Check the pairing (--pair VARIANT=BASE) and that both models ran the same datasets.",
        )
    # Per-model audits need no pair: one model is a complete study, its paired tables are empty.
    tables = {"models": models} | (_paired_tables(paired, options) if has_pairs
                                   else {name: pl.DataFrame() for name in PAIRED_TABLES})
    if paired_open is not None and options.text_metrics:
        tables["text_changes"] = text_change_table(paired_open)
    if judged:
        tables |= _safety_tables(rows, paired_open, models)
    # The per-variant tables carry the variant's quantization metadata (also text_changes of a
    # housing run of a base and its variants, which has no closed pair).
    for name in ("flips", "significance", "stereoset", "text_changes", "safety_flips"):
        if name in tables and tables[name].height:
            tables[name] = with_quant_metadata(tables[name], models)
    tables["rows"] = paired.drop([c for c in ("response_base", "response_variant", "responses_base",
                                               "responses_variant") if c in paired.collect_schema().names()]).collect()
    return tables | _audit_tables(rows, models, options, audits)


#: The tables computed from base/variant pairs (empty in a run without any).
PAIRED_TABLES = ("flips", "uncertainty", "question_flips", "significance", "stereoset", "groups", "rankings",
                 "entropy_hist", "entropy_box", "entropy_diff_hist")


def _paired_tables(paired: pl.LazyFrame, options: StudyOptions) -> dict[str, pl.DataFrame]:
    """The :data:`PAIRED_TABLES` of the base/variant pairs."""
    return {
        "flips": flip_table(paired),
        "uncertainty": uncertainty_table(paired),
        "question_flips": question_flip_table(paired),
        "significance": significance_table(paired, options.tests),
        "stereoset": stereoset_table(paired),
        "groups": group_asymmetry(paired, options.min_group_questions),
        "rankings": ranking_table(paired, options.tests),
        "entropy_hist": entropy_hist(paired),
        "entropy_box": entropy_box(paired),
        "entropy_diff_hist": entropy_diff_hist(paired),
    }


def _housing_tables(rows: pl.LazyFrame, models: pl.DataFrame, options: StudyOptions) -> dict[str, pl.DataFrame]:
    """The housing audit's tables (docs/housing.md), with the study's permutations and seed."""
    from ray_bench.analysis.housing import housing_tables

    return housing_tables(rows, models, options.housing, n_permutations=options.tests.n_permutations,
                          seed=options.tests.seed)
