"""``ray-bench export preferences``: TRL preference data (``prompt``, ``chosen``, ``rejected``).

Two sources (docs/export.md):

* a **reviewed** Argilla export of ``ray-bench export review`` (:mod:`ray_bench.export.reviewed`).
  Only *submitted* responses count. Per record: every distinct ``new-response`` rewrite that
  differs from the variant's answer gives (instruction, chosen = the rewrite, rejected = the
  answer), the tutorial's rule (notes 3.1, 3.4); a record without a rewrite gives one pair from
  ``preferred`` when its reviewers agree on ``base`` or ``variant`` (chosen = that answer,
  rejected = the other); ``same``, disagreement or identical answers give none;
* an **analysis** without review: the reference's rule for BBQ, on the analyzed BBQ questions
  with an ambiguous context: chosen = the choice labelled ``uncertain`` (the unknown answer),
  rejected = the one labelled ``biased``. Disambiguated contexts are left out: there the
  unknown answer is wrong.

Output: TRL's conversational format by default (``prompt`` a user message, ``chosen`` /
``rejected`` an assistant message each; TRL applies the model's chat template, as the runner
did), or its standard format (plain strings; a completion starts with a space when the
prompt does not end in whitespace, the scorer's rule). ``RewardTrainer`` and
``DPOTrainer`` read both. Provenance of every pair is in ``preferences.json`` beside the data.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ray_bench.errors import ExportError
from ray_bench.export.layout import DATA_FILE, PREFER_BASE, PREFER_SAME, QUESTIONS

PREFERENCES_JSON = "preferences.json"
BBQ_RULE, REWRITE_RULE, PREFERRED_RULE = "bbq-unknown-over-biased", "review-rewrite", "review-preferred"
_PREFERRED_LABELS = next(q.labels for q in QUESTIONS if q.name == "preferred")


class PreferenceOptions(BaseModel):
    """Options of ``ray-bench export preferences`` (YAML keys = these fields).

    Attributes:
        reviewed: A reviewed Argilla export (file or directory); or
        analysis: an analysis directory, for the BBQ rule without review.
        out: Where to write the data and ``preferences.json``.
        format: ``conversational`` (chat messages) or ``standard`` (strings), TRL's two formats.
        file_format: ``parquet`` or ``jsonl``.
        select: With ``analysis``: which rows' questions (``ray-bench export review --select``).
        data: With ``analysis``: the prepared questions; default: the one ``analysis.json`` records.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reviewed: Path | None = None
    analysis: Path | None = None
    out: Path
    format: Literal["conversational", "standard"] = "conversational"
    file_format: Literal["parquet", "jsonl"] = "parquet"
    select: list[str] = Field(default_factory=lambda: ["all"], min_length=1)
    data: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PreferenceOptions:
        if (self.reviewed is None) == (self.analysis is None):
            raise ValueError("give exactly one of reviewed (a reviewed Argilla export) or analysis (the BBQ rule)")
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"out {str(self.out)!r} is an existing file, not a directory")
        return self


@dataclass(frozen=True)
class Pair:
    """One preference pair and where it came from."""

    prompt: str
    chosen: str
    rejected: str
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreferenceExport:
    """What :func:`export_preferences` wrote."""

    data_file: Path
    pairs: list[Pair]
    skipped: dict[str, int]
    seconds: float = 0.0

    @property
    def by_rule(self) -> dict[str, int]:
        """Pairs per rule (``source["rule"]``), in the order the rules first occur."""
        return dict(Counter(p.source["rule"] for p in self.pairs))


def _text(value: Any, record_id: str, question: str) -> str:
    if not isinstance(value, str):
        raise ExportError(f"record {record_id!r}: the response to {question!r} is {value!r}, not text",
                          hint="Check the reviewed export: new-response answers are texts.")
    return value


def pairs_from_reviews(records: Iterable[Any]) -> tuple[list[Pair], dict[str, int]]:
    """Preference pairs of reviewed records (rule: module docstring) and the skipped counts by reason."""
    pairs: list[Pair] = []
    skipped: Counter[str] = Counter()
    for rec in records:
        prompt, answer = rec.fields["instruction"], rec.fields["response"]
        base = rec.fields.get("base_response")
        source = {"record_id": rec.record_id, **{k: rec.metadata.get(k) for k in ("model", "base", "subset",
                                                                                 "question_id")}}
        if not any(r.status == "submitted" for r in rec.reviews):
            skipped["not reviewed (no submitted response)"] += 1
            continue
        rewrites: dict[str, str] = {}
        for r in rec.submitted("new-response"):
            text = _text(r.value, rec.record_id, "new-response")
            if text.strip() and text.strip() != answer.strip():
                rewrites.setdefault(text, r.user)
        if rewrites:
            pairs += [Pair(prompt, text, answer, {**source, "rule": REWRITE_RULE, "reviewer": user})
                      for text, user in rewrites.items()]
            continue
        prefs = {r.value for r in rec.submitted("preferred")}
        unknown = prefs - set(_PREFERRED_LABELS)
        if unknown:
            raise ExportError(f"record {rec.record_id!r}: `preferred` answer {sorted(unknown, key=str)[0]!r} is not "
                              f"one of {list(_PREFERRED_LABELS)}",
                              hint="Check the reviewed export's `preferred` column.")
        prefs.discard(PREFER_SAME)
        if not prefs:
            skipped["no rewrite and no preference between base and variant"] += 1
        elif len(prefs) > 1:
            skipped["reviewers disagree on `preferred`"] += 1
        elif not base or base.strip() == answer.strip():
            skipped["base and variant answers are the same text"] += 1
        else:
            chosen, rejected = (base, answer) if prefs == {PREFER_BASE} else (answer, base)
            reviewers = sorted(r.user for r in rec.submitted("preferred") if r.value in prefs)
            pairs.append(Pair(prompt, chosen, rejected, {**source, "rule": PREFERRED_RULE,
                                                         "reviewer": ", ".join(reviewers)}))
    return pairs, dict(skipped)


def _single_index(labels: list[str], label: str, where: str) -> int:
    found = [i for i, lab in enumerate(labels) if lab == label]
    if len(found) != 1:
        raise ExportError(f"{where}, field 'choice_labels': {len(found)} choices are labelled {label!r}, "
                          f"expected exactly one (labels: {labels})",
                          hint="Prepare the BBQ questions again with `ray-bench datasets prepare`.")
    return found[0]


def bbq_pairs(questions: Any, data_dir: Path) -> tuple[list[Pair], dict[str, int]]:
    """The reference's BBQ rule on question rows (``subset``, ``question_id``, ``context_condition``,
    ``prompt``, ``choices``, ``choice_labels``): chosen = unknown, rejected = biased; ambiguous only."""
    pairs: list[Pair] = []
    skipped: Counter[str] = Counter()
    for row in questions.iter_rows(named=True):
        if row["context_condition"] != "ambig":
            skipped["disambiguated context: the unknown answer is not the correct one"] += 1
            continue
        where = f"file {data_dir / (row['subset'] + '.parquet')}, row {row['question_id']!r}"
        labels, choices = row["choice_labels"] or [], row["choices"] or []
        if len(labels) != len(choices):
            raise ExportError(f"{where}, field 'choice_labels': {len(labels)} labels for {len(choices)} choices",
                              hint="Prepare the BBQ questions again with `ray-bench datasets prepare`.")
        unknown, biased = _single_index(labels, "uncertain", where), _single_index(labels, "biased", where)
        pairs.append(Pair(row["prompt"], choices[unknown], choices[biased],
                          {"rule": BBQ_RULE, "subset": row["subset"], "question_id": row["question_id"]}))
    return pairs, dict(skipped)


def _completion(prompt: str, text: str) -> str:
    # TRL's standard format concatenates prompt + completion: add the space the scorer adds.
    return f" {text}" if prompt and not prompt[-1].isspace() and not text[:1].isspace() else text


def trl_rows(pairs: list[Pair], fmt: str) -> list[dict[str, Any]]:
    """The pairs in TRL's ``conversational`` or ``standard`` preference format."""
    if fmt == "standard":
        return [{"prompt": p.prompt, "chosen": _completion(p.prompt, p.chosen),
                 "rejected": _completion(p.prompt, p.rejected)} for p in pairs]
    return [{"prompt": [{"role": "user", "content": p.prompt}], "chosen": [{"role": "assistant", "content": p.chosen}],
             "rejected": [{"role": "assistant", "content": p.rejected}]} for p in pairs]


def write_trl(rows: list[dict[str, Any]], out: Path, fmt: str, file_format: str) -> Path:
    """Write the rows as ``out/data/train-00000-of-00001.<parquet|jsonl>`` (``load_dataset(out)`` finds it;
    the review export's :data:`~ray_bench.export.layout.DATA_FILE` with the file format's suffix)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ray_bench.atomic import atomic_path

    path = (out / DATA_FILE).with_suffix(f".{file_format}")
    with atomic_path(path) as tmp:
        if file_format == "jsonl":
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        else:
            message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
            kind = pa.string() if fmt == "standard" else message
            schema = pa.schema([(c, kind) for c in ("prompt", "chosen", "rejected")])
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    return path


def _analysis_pairs(options: PreferenceOptions) -> tuple[list[Pair], dict[str, int], dict[str, Any]]:
    import polars as pl

    from ray_bench.export.selection import select_rows
    from ray_bench.export.sources import question_texts, read_analysis_dir

    analysis = read_analysis_dir(options.analysis)
    bbq = select_rows(analysis.rows, options.select, datasets=["BBQ"])
    if bbq.height == 0:
        raise ExportError(f"the analysis {analysis.directory} has no BBQ question selected by "
                          f"{', '.join(options.select)}: the reference rule applies to BBQ only",
                          hint="Review other datasets with `ray-bench export review`, then pass --reviewed.")
    keys = bbq.select("subset", "question_id", "context_condition").unique().sort("subset", "question_id")
    data_dir = analysis.source_dir("data", options.data)
    texts = keys.join(question_texts(data_dir, keys), on=["subset", "question_id"], how="left")
    pairs, skipped = bbq_pairs(texts.with_columns(pl.col("context_condition").cast(pl.String)), data_dir)
    return pairs, skipped, {"analysis": str(analysis.directory.resolve()), "data": str(data_dir.resolve())}


def export_preferences(options: PreferenceOptions) -> PreferenceExport:
    """Build the preference pairs of a reviewed export or an analysis and write them for TRL.

    Raises:
        ExportError: the input is unreadable or gives no pair (the skipped counts say why).
        ResultsError: the analysis or its question tables cannot be read.
    """
    from ray_bench.export.reviewed import read_reviewed

    started = time.time()
    if options.reviewed is not None:
        records = read_reviewed(options.reviewed)
        pairs, skipped = pairs_from_reviews(records)
        source: dict[str, Any] = {"reviewed": str(Path(options.reviewed).resolve()), "n_records": len(records)}
    else:
        pairs, skipped, source = _analysis_pairs(options)
    if not pairs:
        detail = "; ".join(f"{n} {why}" for why, n in sorted(skipped.items())) or "no record"
        raise ExportError(f"no preference pair could be made ({detail})",
                          hint="Submit rewrites (`new-response`) or `preferred` answers in Argilla, export the "
                               "dataset again and pass it with --reviewed.")
    out = Path(options.out)
    data_file = write_trl(trl_rows(pairs, options.format), out, options.format, options.file_format)
    result = PreferenceExport(data_file, pairs, skipped, round(time.time() - started, 2))
    _write_sidecar(out, options, source, result)
    return result


def _write_sidecar(out: Path, options: PreferenceOptions, source: dict[str, Any], result: PreferenceExport) -> None:
    from ray_bench import provenance
    from ray_bench.atomic import write_json_atomic

    write_json_atomic(out / PREFERENCES_JSON, {
        **source, "options": options.model_dump(mode="json"), "data_file": str(result.data_file.relative_to(out)),
        "n_pairs": len(result.pairs), "by_rule": result.by_rule, "skipped": result.skipped,
        "pairs": [{"index": i, **p.source} for i, p in enumerate(result.pairs)], "seconds": result.seconds,
        "provenance": provenance.collect(),
    })
