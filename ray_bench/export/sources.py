"""What the exports read: an analysis directory, and the texts its rows point at.

The analysis (``ray-bench analyze --out DIR``) keeps per-question *labels* in ``rows.parquet``
but not the texts (prompts, choices, generated answers). Those come from where
``analysis.json`` says the analysis read them: the prepared question tables (``data``) and,
for open answers only, the run's result shards (``results``, read with
:func:`ray_bench.results.scan_run`). Both can be overridden when the directories moved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ray_bench.errors import ResultsError
from ray_bench.report.load import META_FILE, read_meta, read_table
from ray_bench.results.reading import prepared_questions

#: Columns of ``rows.parquet`` the exports need.
ROW_COLUMNS = ("variant", "base", "role", "dataset", "subset", "axis", "kind", "question_id", "prediction_base",
               "prediction_variant", "p_biased_base", "p_biased_variant", "is_biased_base", "is_biased_variant",
               "flipped", "bias_flipped", "direction")
#: Columns the exports carry when the analysis has them (null otherwise).
OPTIONAL_ROW_COLUMNS = {"q_label": pl.String, "method": pl.String, "scheme": pl.String, "group": pl.String,
                        "context_condition": pl.String, "entropy_base": pl.Float64, "entropy_variant": pl.Float64,
                        "entropy_bin": pl.String}
QUESTION_TEXT_COLUMNS = ("question_id", "prompt", "turns", "choices", "choice_labels")


def _hint(directory: Path) -> str:
    return f"Run `ray-bench analyze --results RUN_DIR --out {directory}` first, then pass that directory to --analysis."


@dataclass(frozen=True)
class AnalysisDir:
    """An analysis directory as the exports read it.

    Attributes:
        directory: The ``--out`` directory of ``ray-bench analyze``.
        rows: The paired per-question rows (``rows.parquet``), every optional column present.
        models: The model table (``models.parquet``; quantization metadata of each variant).
        meta: ``analysis.json``.
        judges: Model -> the judge whose verdicts its open answers carry (from ``safety.parquet``).
    """

    directory: Path
    rows: pl.DataFrame
    models: pl.DataFrame
    meta: dict[str, Any]
    judges: dict[str, str] = field(default_factory=dict)

    def source_dir(self, key: str, override: str | Path | None) -> Path:
        """``override``, else the ``results`` / ``data`` directory recorded in ``analysis.json``."""
        if override is not None:
            return Path(override)
        recorded = self.meta.get(key)
        if not recorded:
            raise ResultsError(f"{self.directory / META_FILE} does not record the {key} directory",
                               hint=f"Pass it with --{key} DIR.")
        return Path(recorded)


def read_analysis_dir(directory: str | Path) -> AnalysisDir:
    """Read ``rows``, ``models``, ``safety`` (when present) and ``analysis.json`` of an analysis.

    Raises:
        ResultsError: the directory or a table is missing or unreadable, or ``rows`` lacks a column.
    """
    directory = Path(directory)
    hint = _hint(directory)
    if not directory.is_dir():
        raise ResultsError(f"analysis directory {str(directory)!r} does not exist", hint=hint)
    rows = read_table(directory, "rows", ROW_COLUMNS, hint)
    rows = rows.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in OPTIONAL_ROW_COLUMNS.items()
                             if c not in rows.columns)
    models = read_table(directory, "models", (), hint)
    meta = read_meta(directory, hint)
    judges: dict[str, str] = {}
    if (directory / "safety.parquet").is_file():
        safety = read_table(directory, "safety", (), hint)
        if {"model", "judge"} <= set(safety.columns):
            for model, judge in safety.select("model", "judge").drop_nulls().unique().iter_rows():
                judges.setdefault(model, judge)
    return AnalysisDir(directory, rows, models, meta, judges)


def question_texts(data_dir: Path, keys: pl.DataFrame) -> pl.DataFrame:
    """Prompt, turns, choices and choice labels of the questions in ``keys`` (``subset``, ``question_id``).

    Raises:
        ResultsError: a subset's table is missing, or a question is not in it (names both).
    """
    frames = []
    for subset in sorted(keys["subset"].unique().to_list()):
        path = prepared_questions(data_dir, subset)
        wanted = keys.filter(pl.col("subset") == subset).select("question_id").unique()
        table = pl.read_parquet(path, columns=list(QUESTION_TEXT_COLUMNS)).join(wanted, on="question_id", how="semi")
        missing = wanted.join(table, on="question_id", how="anti")
        if missing.height:
            raise ResultsError(
                f"question {missing['question_id'][0]!r} of the analysis is not in {str(path)!r}",
                hint="Pass the prepared questions the analyzed run used with --data DIR.")
        frames.append(table.with_columns(pl.lit(subset).alias("subset")))
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(
        schema={"question_id": pl.String, "prompt": pl.String, "turns": pl.List(pl.String),
                "choices": pl.List(pl.String), "choice_labels": pl.List(pl.String), "subset": pl.String})


def open_answers(results_dir: Path, data_dir: Path, judge: str | None, keys: pl.DataFrame) -> pl.DataFrame:
    """``response`` and ``responses`` of each (``model``, ``subset``, ``question_id``) in ``keys``.

    Raises:
        ResultsError: the run cannot be read, or an answer the analysis paired is not in it.
    """
    from ray_bench.results import scan_run

    run = scan_run(results_dir, data_dir, judge)
    answers = (run.rows.filter(pl.col("kind") == "open").select("model", "subset", "question_id", "response",
                                                                 "responses")
               .join(keys.lazy(), on=["model", "subset", "question_id"], how="semi").collect())
    missing = keys.join(answers, on=["model", "subset", "question_id"], how="anti")
    if missing.height:
        row = missing.row(0, named=True)
        raise ResultsError(
            f"the answer of model {row['model']!r} to {row['question_id']!r} is not in the run {str(results_dir)!r}",
            hint="Pass the run the analysis read with --results DIR.")
    return answers
