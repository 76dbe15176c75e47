"""Reading a reviewed Argilla v2 export back: each record with its reviewers' responses.

Argilla writes reviewed records in two layouts, both read here (docs/export.md):

* **flat** (``ds.records.to_datasets()``, ``Dataset.to_hub``; Parquet or JSON lines): one
  column per field and metadata property, and per question ``<q>.responses`` (one value per
  reviewer), ``<q>.responses.users`` and ``<q>.responses.status``. A ``<q>.response`` column
  (the convention of ``ds.records.log``: one response of one user) is read as a submitted
  response of reviewer ``(column)``;
* **nested** (``Dataset.to_disk``'s ``records.json``): a JSON list of records with
  ``fields``, ``metadata`` and ``responses: {question: [{value, user_id, status}]}``.

A path may be one file (``.parquet``, ``.jsonl``, ``.json``) or a directory: its ``records.json``
if it has one, else every Parquet / JSON-lines file under it (``data/`` of a Hub export).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_bench.errors import ExportError
from ray_bench.export.layout import FIELDS, QUESTIONS, RECORDS_FILE

#: Fields a reviewed record must have (the review export's names).
REQUIRED_FIELDS = ("instruction", "response")
_QUESTION_NAMES = tuple(q.name for q in QUESTIONS)
_FIELD_NAMES = tuple(f.name for f in FIELDS)
#: Stand-in reviewer of a ``<q>.response`` column (it names no user).
COLUMN_REVIEWER = "(column)"


@dataclass(frozen=True)
class Review:
    """One reviewer's response to one question."""

    question: str
    value: Any
    user: str
    status: str


@dataclass(frozen=True)
class ReviewedRecord:
    """A reviewed record: its fields, metadata and every reviewer's responses."""

    record_id: str
    fields: dict[str, Any]
    metadata: dict[str, Any]
    reviews: tuple[Review, ...] = field(default=())

    def submitted(self, question: str) -> list[Review]:
        """The submitted responses to ``question`` (drafts and discarded records do not count)."""
        return [r for r in self.reviews if r.question == question and r.status == "submitted"]


def _fail(path: Path, message: str, row: int | None = None, column: str | None = None) -> ExportError:
    where = ", ".join(p for p in (f"file {path}", f"row {row}" if row is not None else None,
                                  f"field {column!r}" if column else None) if p)
    return ExportError(f"{where}: {message}",
                       hint="Pass a reviewed Argilla export: ds.records.to_datasets().to_parquet(...), "
                            "Dataset.to_hub or Dataset.to_disk of the dataset `ray-bench export review` made.")


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ExportError(f"reviewed export {str(path)!r} does not exist",
                          hint="Export the reviewed dataset from Argilla (to_disk, to_hub or to_datasets) and pass it.")
    if (path / RECORDS_FILE).is_file():
        return [path / RECORDS_FILE]
    files = sorted(p for p in path.rglob("*") if p.suffix in (".parquet", ".jsonl")
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise ExportError(f"no records.json, Parquet or JSON-lines file under {str(path)!r}",
                          hint="Pass the directory or file Argilla exported the reviewed records to.")
    return files


def _is_json_list(path: Path) -> bool:
    """Whether a ``.json`` file holds one JSON list (``records.json``) rather than JSON lines."""
    try:
        with path.open(encoding="utf-8") as f:
            head = f.read(4096).lstrip()
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot be read: {exc}") from exc
    return head.startswith("[")


def _flat_rows(path: Path) -> list[dict[str, Any]]:
    import polars as pl

    try:
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_ndjson(path)
    except Exception as exc:  # polars raises several kinds for malformed files
        raise _fail(path, f"cannot be read: {exc}".replace("\n", " ")) from exc
    return frame.to_dicts()


def _flat_reviews(path: Path, i: int, row: dict[str, Any]) -> list[Review]:
    reviews = []
    for q in _QUESTION_NAMES:
        values = row.get(f"{q}.responses")
        if values is not None:
            users = row.get(f"{q}.responses.users") or []
            statuses = row.get(f"{q}.responses.status") or []
            if len(users) != len(values) or len(statuses) != len(values):
                raise _fail(path, f"{len(values)} responses but {len(users)} users and {len(statuses)} statuses", i,
                            f"{q}.responses")
            reviews += [Review(q, v, str(u), str(s)) for v, u, s in zip(values, users, statuses) if v is not None]
        if row.get(f"{q}.response") is not None:
            reviews.append(Review(q, row[f"{q}.response"], COLUMN_REVIEWER, "submitted"))
    return reviews


def _from_flat(path: Path, i: int, row: dict[str, Any]) -> ReviewedRecord:
    fields = {k: row.get(k) for k in _FIELD_NAMES}
    skip = {"id", "status", "_server_id", *fields}
    metadata = {k: v for k, v in row.items() if k not in skip and "." not in k and k not in _QUESTION_NAMES}
    return ReviewedRecord(str(row.get("id") or f"{path.name}:{i}"), fields, metadata,
                          tuple(_flat_reviews(path, i, row)))


def _from_nested(path: Path, i: int, rec: Any) -> ReviewedRecord:
    if not isinstance(rec, dict) or not isinstance(rec.get("fields"), dict):
        raise _fail(path, "a record must be an object with a `fields` object (Dataset.to_disk's layout)", i)
    reviews = []
    for q, answers in (rec.get("responses") or {}).items():
        for answer in answers or []:
            if not isinstance(answer, dict) or "value" not in answer:
                raise _fail(path, "each response must be an object with a `value`", i, f"responses.{q}")
            reviews.append(Review(q, answer["value"], str(answer.get("user_id")), str(answer.get("status"))))
    return ReviewedRecord(str(rec.get("id") or f"{path.name}:{i}"), dict(rec["fields"]),
                          dict(rec.get("metadata") or {}), tuple(reviews))


def read_reviewed(path: str | Path) -> list[ReviewedRecord]:
    """Every record of a reviewed export (either layout), checked to have the review's fields.

    Raises:
        ExportError: the path is missing or unreadable, or a record lacks a field (names file,
            row and field).
    """
    records: list[ReviewedRecord] = []
    for file in _files(Path(path)):
        if file.suffix == ".json" and _is_json_list(file):
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise _fail(file, f"is not JSON: {exc}") from exc
            parsed = [_from_nested(file, i, rec) for i, rec in enumerate(data)]
        else:  # Parquet, or JSON lines (`datasets`' to_json writes lines, also to a .json name)
            parsed = [_from_flat(file, i, row) for i, row in enumerate(_flat_rows(file))]
        for i, rec in enumerate(parsed):
            for name in REQUIRED_FIELDS:
                if not isinstance(rec.fields.get(name), str):
                    raise _fail(file, "missing or not a string: is this an export of `ray-bench export review`?",
                                i, name)
        records += parsed
    return records
