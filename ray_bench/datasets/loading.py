"""Read and validate every file of one dataset directory into :class:`Question` records.

Nothing is written here: a dataset is either loaded completely and valid, or a
:class:`DatasetError` names the first bad file, row and field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ray_bench.datasets.iat import generate_iat_rows, parse_stimuli
from ray_bench.datasets.parsers import PARSERS
from ray_bench.datasets.records import Question, RowContext
from ray_bench.datasets.sources import FetchedFile, Source
from ray_bench.datasets.specs import DatasetSpec
from ray_bench.errors import DatasetError, DownloadError


@dataclass
class LoadedDataset:
    """The validated questions of one dataset directory.

    Attributes:
        spec: The dataset.
        questions: All rows, file by file in axis order.
        counts: Rows per axis file that was found (or generated).
        missing: Relative paths of expected files the source does not have.
        files: Where each axis was read from (path, URL, or the stimuli file for IAT).
        ignored: JSON files in a local source folder that are not known axes (not read).
        warnings: Rows that are kept but cannot be scored as they stand (a closed question whose
            choices repeat a text), each naming the file, row and field.
    """

    spec: DatasetSpec
    questions: list[Question] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_dataset(spec: DatasetSpec, source: Source, iat_stimuli: str | None = None) -> LoadedDataset:
    """Load and validate one dataset directory from ``source``.

    Args:
        spec: Which dataset.
        source: Where its files are.
        iat_stimuli: Path or URL of the IAT stimuli CSV (IAT only; see :meth:`Source.stimuli`).

    Raises:
        DatasetError: A file is not a JSON list of objects, or a row is invalid.
        DownloadError: A remote file could not be fetched.
    """
    loaded = LoadedDataset(spec)
    if spec.generated:
        _load_generated(loaded, source, iat_stimuli)
    else:
        loaded.ignored = source.unexpected_files(spec.folder, spec.axes)
        for axis in spec.axes:
            relpath = f"{spec.folder}/{axis}.json"
            fetched = source.fetch(relpath)
            if fetched is None:
                loaded.missing.append(relpath)
                continue
            _add_rows(loaded, axis, fetched.name, parse_json_rows(fetched))
    _check_unique_ids(loaded)
    return loaded


def parse_json_rows(fetched: FetchedFile) -> list[Any]:
    """Decode a source file that must hold one JSON list."""
    try:
        data = json.loads(fetched.data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=fetched.name) from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise DatasetError(f"not valid JSON: {exc.msg} at {where}", file=fetched.name) from None
    except RecursionError:
        raise DatasetError("JSON nested too deeply to be a question file", file=fetched.name) from None
    if not isinstance(data, list):
        found = _json_type(data)
        raise DatasetError(f"expected a JSON list of question objects, got a JSON {found}", file=fetched.name)
    return data


def _load_generated(loaded: LoadedDataset, source: Source, iat_stimuli: str | None) -> None:
    try:
        stimuli = source.stimuli(iat_stimuli)
    except DownloadError as exc:
        raise DownloadError(
            f"IAT needs its word lists: {exc.message}",
            hint="Pass a local copy with --iat-stimuli PATH, or leave IAT out with --dataset.",
        ) from None
    try:
        text = stimuli.data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=stimuli.name) from None
    # Sample ids get a prefix so they can never be paired with results on the real data.
    prefix = "sample/" if source.is_sample else ""
    for axis, rows in generate_iat_rows(parse_stimuli(text, stimuli.name), id_prefix=prefix).items():
        _add_rows(loaded, axis, stimuli.name, rows)


def _add_rows(loaded: LoadedDataset, axis: str, file: str, rows: list[Any]) -> None:
    spec = loaded.spec
    parser = PARSERS.get(spec.family)
    for i, raw in enumerate(rows):
        ctx = RowContext(file=file, row=i, dataset=spec.family, subset=spec.name, axis=axis, kind=spec.kind)
        if not isinstance(raw, dict):
            raise ctx.fail(f"expected a JSON object, got a JSON {_json_type(raw)}")
        question = parser(raw, ctx)
        _warn_duplicate_choices(loaded, question, ctx)
        loaded.questions.append(question)
    loaded.counts[axis] = len(rows)
    loaded.files[axis] = file


def _warn_duplicate_choices(loaded: LoadedDataset, question: Question, ctx: RowContext) -> None:
    """Record a warning when two choices of ``question`` are the same text.

    Identical texts get identical scores, so the question cannot tell them apart and an
    argmax would always pick the first. The row is kept (the reference counts include it,
    e.g. BiasLens/Choices/culture/329); the answer stage gives it an error row instead.
    """
    first_at: dict[str, int] = {}
    for i, text in enumerate(question.choices or ()):
        j = first_at.setdefault(text, i)
        if j != i:
            where = f"file {ctx.file}, row {ctx.row}, field 'choices'"
            loaded.warnings.append(
                f"{where}: choices {j} and {i} are the same text {text!r} (question {question.question_id!r}); "
                "kept, but runs give it an error row instead of a score: fix the source file to score it"
            )
            return


def _check_unique_ids(loaded: LoadedDataset) -> None:
    seen: dict[str, tuple[str, int]] = {}
    start = 0
    for axis, count in loaded.counts.items():
        for i, question in enumerate(loaded.questions[start : start + count]):
            where = (loaded.files[axis], i)
            first = seen.setdefault(question.question_id, where)
            if first is not where:
                raise DatasetError(
                    f"duplicate question id {question.question_id!r} (first at file {first[0]} row {first[1]})",
                    file=where[0],
                    row=i,
                    field="idx",
                )
        start += count


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
