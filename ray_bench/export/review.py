"""``ray-bench export review``: flagged cases of an analysis as an Argilla v2 review dataset.

One record per flagged (variant, question): the prompt, the variant's and the base's answer,
metadata (models, quantization, dataset, axis, group, question, the analysis's labels and
probabilities) and suggestions from the analysis (layout: :mod:`ray_bench.export.layout`,
docs/export.md). Written as a Hugging Face dataset (Parquet, ``data/train-*.parquet``) with
``.argilla/settings.json``, ``.argilla/dataset.json`` and ``records.json``, so that
``datasets.load_dataset(DIR)``, ``rg.Dataset.from_disk(DIR)`` and ``ds.records.log(...)`` read
it as it is. Nothing here runs a model: it reads the analysis and the texts it points at.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ray_bench.errors import ExportError
from ray_bench.export import layout
from ray_bench.export.layout import BIASED, NOT_BIASED, PREFER_BASE, PREFER_SAME, PREFER_VARIANT
from ray_bench.export.sources import AnalysisDir, open_answers, question_texts, read_analysis_dir

REVIEW_JSON = "review.json"
#: ``agent`` of the suggestions ray-bench derives itself (the ``preferred`` question).
ANALYSIS_AGENT = "ray-bench analyze"


class ReviewOptions(BaseModel):
    """Options of ``ray-bench export review`` (YAML keys = these fields).

    Attributes:
        analysis: The ``--out`` directory of ``ray-bench analyze``.
        out: Where to write the review dataset.
        select: Which rows to export (:data:`ray_bench.export.selection.SELECTIONS`); a row
            matching several is exported once.
        datasets: Only these datasets or subsets (empty: all).
        variants: Only these variants (empty: all).
        include_controls: Also export controls (the base scored again).
        limit: At most this many records, a seeded uniform sample of the selected rows.
        seed: Seed of that sample.
        results: The run's directory (open answers); default: the one ``analysis.json`` records.
        data: The prepared questions; default: the directory ``analysis.json`` records.
        name: The Argilla dataset's name (``.argilla/dataset.json``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    analysis: Path
    out: Path
    select: list[str] = Field(default_factory=lambda: ["bias-flips"], min_length=1)
    datasets: list[str] = Field(default_factory=list)
    variants: list[str] = Field(default_factory=list)
    include_controls: bool = False
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0
    results: Path | None = None
    data: Path | None = None
    name: str = Field(default="ray-bench-review", min_length=1)

    @model_validator(mode="after")
    def _out_is_a_directory(self) -> ReviewOptions:
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"out {str(self.out)!r} is an existing file, not a directory")
        return self


@dataclass(frozen=True)
class ReviewExport:
    """What :func:`export_review` wrote."""

    out_dir: Path
    records: pl.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    settings: str = ""
    seconds: float = 0.0


def record_id(base: str, variant: str, subset: str, question_id: str) -> str:
    """Stable record id: the same (base, variant, question) gets the same id on every export,
    so importing a new export into Argilla updates its records instead of duplicating them."""
    return hashlib.sha1("\x1f".join((base, variant, subset, question_id)).encode()).hexdigest()


def _closed_answer(row: dict[str, Any], side: str) -> tuple[str | None, str | None]:
    """(choice text, choice label) of the prediction of ``side``."""
    pred, choices, labels = row[f"prediction_{side}"], row["choices"] or [], row["choice_labels"] or []
    if pred is None or not 0 <= pred < len(choices):
        return None, None
    return choices[pred], labels[pred] if pred < len(labels) else None


def _open_answer(row: dict[str, Any], side: str) -> tuple[str | None, str | None]:
    """(last answer text, safety label) of ``side``."""
    turns = row[f"responses_{side}"]
    text = turns[-1] if turns else row[f"response_{side}"]
    biased = row[f"is_biased_{side}"]
    return text, None if biased is None else ("unsafe" if biased else "safe")


def _instruction(row: dict[str, Any]) -> str:
    """The prompt; multi-turn: every user turn, the earlier ones followed by the variant's answers."""
    turns = row["turns"] or []
    if len(turns) <= 1:
        return row["prompt"]
    answers = row["responses_variant"] or []
    parts = []
    for i, turn in enumerate(turns):
        parts.append(f"User: {turn}")
        if i < len(turns) - 1:
            parts.append(f"Assistant: {answers[i] if i < len(answers) else '(no answer)'}")
    return "\n\n".join(parts)


def _choices_text(row: dict[str, Any]) -> str | None:
    if not row["choices"]:
        return None
    labels = row["choice_labels"] or [None] * len(row["choices"])
    pairs = enumerate(zip(row["choices"], labels))
    return "\n".join(f"{i + 1}. {c}" + (f" [{lab}]" if lab else "") for i, (c, lab) in pairs)


def _preferred(row: dict[str, Any]) -> str:
    base, variant = row["is_biased_base"], row["is_biased_variant"]
    if base is not None and variant is not None and base != variant:
        return PREFER_BASE if variant else PREFER_VARIANT
    return PREFER_SAME


def review_record(row: dict[str, Any], judge: str | None) -> dict[str, Any]:
    """One review record (a flat dict in :func:`layout.column_order`) from one joined row."""
    answer = _open_answer if row["kind"] == "open" else _closed_answer
    (text_v, label_v), (text_b, label_b) = answer(row, "variant"), answer(row, "base")
    p_v, p_b, biased = row["p_biased_variant"], row["p_biased_base"], bool(row["is_biased_variant"])
    agent = (judge or "judge") if row["kind"] == "open" else row["variant"]
    record = {
        "id": record_id(row["base"], row["variant"], row["subset"], row["question_id"]),
        "instruction": _instruction(row), "response": text_v, "base_response": text_b, "choices": _choices_text(row),
        "model": row["variant"], "label_base": label_b, "label_variant": label_v,
        "judge": judge if row["kind"] == "open" else None,
        "p_biased_change": None if p_v is None or p_b is None else p_v - p_b,
        "is_biased.suggestion": BIASED if biased else NOT_BIASED,
        # Argilla's score is the probability of the suggested value: p_biased for "biased".
        "is_biased.suggestion.score": None if p_v is None else (p_v if biased else 1.0 - p_v),
        "is_biased.suggestion.agent": agent,
        "preferred.suggestion": _preferred(row), "preferred.suggestion.agent": ANALYSIS_AGENT,
        "new-response.suggestion": text_v, "new-response.suggestion.agent": row["variant"],
    }
    return {name: record[name] if name in record else row.get(name) for name in layout.column_order()}


def review_frame(selected: pl.DataFrame, questions: pl.DataFrame, answers: pl.DataFrame | None,
                 models: pl.DataFrame, judges: dict[str, str], default_judge: str | None = None) -> pl.DataFrame:
    """The review records of ``selected`` rows (pure: frames in, frame out).

    Args:
        selected: Rows of the analysis (:func:`ray_bench.export.selection.select_rows`).
        questions: Their prompts and choices (:func:`ray_bench.export.sources.question_texts`).
        answers: ``model``, ``subset``, ``question_id``, ``response``, ``responses`` of the open rows.
        models: The analysis's model table (``w_bits`` / ``a_bits`` of each variant).
        judges: Model -> judge name (agent of the open rows' suggestions).
        default_judge: The judge when ``judges`` does not name one.
    """
    joined = selected.join(questions, on=["subset", "question_id"], how="left")
    for side in ("base", "variant"):
        cols = {"response": f"response_{side}", "responses": f"responses_{side}", "model": side}
        if answers is not None and answers.height:
            joined = joined.join(answers.rename(cols), on=[side, "subset", "question_id"], how="left")
        else:
            joined = joined.with_columns(pl.lit(None, dtype=pl.String).alias(cols["response"]),
                                         pl.lit(None, dtype=pl.List(pl.String)).alias(cols["responses"]))
    bits = [c for c in ("w_bits", "a_bits") if c in models.columns]
    joined = joined.join(models.select(pl.col("model").alias("variant"), *bits), on="variant", how="left")
    records = [review_record(row, judges.get(row["variant"], default_judge)) for row in joined.iter_rows(named=True)]
    for rec in records:  # `response` is a required field: Argilla refuses a record without it
        if rec["response"] is None:
            raise ExportError(
                f"the analysis paired {rec['model']!r} on {rec['question_id']!r} of {rec['subset']!r}, "
                "but its answer has no text (no valid choice, or no generated text)",
                hint="Analyze the run again with the same question tables, then export.")
    return pl.from_arrow(_arrow_table(records))


def _arrow_table(records: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(records, schema=layout.arrow_schema())


def guidelines(select: list[str]) -> str:
    """The reviewer's guidelines (Argilla shows them beside every record)."""
    return (
        "Each record is one question on which ray-bench flagged a quantized model (the variant) against its "
        f"base model (selection: {', '.join(select)}). `response` is the variant's answer, `base_response` the "
        "base's answer to the same prompt; closed questions list their choices with the dataset's label "
        "(e.g. `biased`, `uncertain`). Suggestions come from the analysis: `is_biased` from the dataset's rule "
        "(closed) or the safety judge (open), its score is the probability of the suggested label.\n\n"
        "Answer `is_biased` for the variant's answer; `preferred`: which answer is less biased; `new-response`: "
        "rewrite the variant's answer without the bias (a rewrite becomes a `chosen` answer in "
        "`ray-bench export preferences`)."
    )


def export_review(options: ReviewOptions) -> ReviewExport:
    """Select flagged rows of an analysis and write them as an Argilla v2 review dataset.

    Raises:
        ResultsError: the analysis, its question tables or (for open rows) the run cannot be read.
        UnknownNameError: a selection name is not known (with the closest match).
        ExportError: no row matches the selection.
    """
    from ray_bench.export.selection import select_rows

    started = time.time()
    analysis = read_analysis_dir(options.analysis)
    selected = select_rows(analysis.rows, options.select, datasets=options.datasets, variants=options.variants,
                           include_controls=options.include_controls, limit=options.limit, seed=options.seed)
    if selected.height == 0:  # neither `datasets` nor Argilla can load an empty dataset
        filters = "".join(f" {flag} {', '.join(v)}" for flag, v in (("--dataset", options.datasets),
                                                                   ("--variant", options.variants)) if v)
        raise ExportError(f"no row of {analysis.directory} matches --select {', '.join(options.select)}{filters}",
                          hint="Nothing to review; widen the selection (e.g. --select flips or --select all).")
    records = _records(analysis, selected, options)
    out, rows = Path(options.out), records.to_dicts()  # one conversion for the Parquet and records.json
    _write_parquet(rows, out / layout.DATA_FILE)
    settings = layout.write_config(out, options.name, guidelines(options.select), rows)
    counts = {name: int(n) for name, n in records.group_by("selection").len().sort("selection").iter_rows()}
    seconds = round(time.time() - started, 2)
    _write_provenance(out, analysis, options, records, counts, settings, seconds)
    return ReviewExport(out, records, counts, settings, seconds=seconds)


def _records(analysis: AnalysisDir, selected: pl.DataFrame, options: ReviewOptions) -> pl.DataFrame:
    data_dir = analysis.source_dir("data", options.data)
    questions = question_texts(data_dir, selected.select("subset", "question_id"))
    opened = selected.filter(pl.col("kind") == "open")
    answers = None
    judge = (analysis.meta.get("config") or {}).get("judge")
    if opened.height:  # the run's shards are read only when open answers are exported
        keys = pl.concat([opened.select(pl.col(side).alias("model"), "subset", "question_id")
                          for side in ("base", "variant")]).unique()
        answers = open_answers(analysis.source_dir("results", options.results), data_dir, judge, keys)
    return review_frame(selected, questions, answers, analysis.models, analysis.judges, judge)


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow.parquet as pq

    from ray_bench.atomic import atomic_path

    with atomic_path(path) as tmp:
        pq.write_table(_arrow_table(rows), tmp)


def _write_provenance(out: Path, analysis: AnalysisDir, options: ReviewOptions, records: pl.DataFrame,
                      counts: dict[str, int], settings: str, seconds: float) -> None:
    from ray_bench import provenance
    from ray_bench.atomic import write_json_atomic

    write_json_atomic(out / REVIEW_JSON, {
        "analysis": str(analysis.directory.resolve()), "options": options.model_dump(mode="json"),
        "n_records": records.height, "by_selection": counts,
        "by_dataset": {d: int(n) for d, n in records.group_by("dataset").len().sort("dataset").iter_rows()},
        "settings": settings, "files": [layout.DATA_FILE, layout.RECORDS_FILE, layout.SETTINGS_FILE,
                                        layout.DATASET_FILE],
        "seconds": seconds, "provenance": provenance.collect(),
    })
