"""The question record and the checks that turn one source row into it.

Every check raises :class:`~ray_bench.errors.DatasetError` naming the file, the 0-based
row index in the file's JSON list and the field, so a bad row can be found at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ray_bench.errors import DatasetError
from ray_bench.schema import CHOICE_LABELS

#: Longest text a question field may hold (characters). The benchmarks' longest prompts
#: are ~1,300 characters; 100,000 (~25k tokens) is past most context windows, and a
#: runaway 50 MB prompt otherwise reaches the model workers and their RAM.
MAX_TEXT_CHARS = 100_000


@dataclass(frozen=True)
class Question:
    """One prepared question; field for field the columns of ``schema.question_schema()``."""

    question_id: str
    dataset: str
    subset: str
    axis: str
    kind: str
    prompt: str
    turns: list[str] | None
    choices: list[str] | None
    choice_labels: list[str] | None
    group: str | None
    context_condition: str | None
    answer_index: int | None
    source_fields: str

    def as_row(self) -> dict[str, Any]:
        """The record as a plain dict, ready for ``pyarrow.Table.from_pylist``."""
        return asdict(self)


@dataclass(frozen=True)
class RowContext:
    """Where a source row comes from; its methods read fields or fail with that location.

    Attributes:
        file: The source file (path or URL) as shown to the user.
        row: 0-based index of the row in the file's JSON list.
        dataset: Family name (``dataset`` column).
        subset: Directory name (``subset`` column).
        axis: Social axis, the file stem (``axis`` column).
        kind: ``closed`` or ``open``.
    """

    file: str
    row: int
    dataset: str
    subset: str
    axis: str
    kind: str

    def fail(self, message: str, field: str | None = None) -> DatasetError:
        """A :class:`DatasetError` located at this row (and ``field``), to be raised."""
        return DatasetError(message, file=self.file, row=self.row, field=field)

    def require(self, raw: Mapping[str, Any], field: str) -> Any:
        """The value of ``field``; a missing field is an error."""
        if field not in raw:
            raise self.fail("required field is missing", field)
        return raw[field]

    def string(self, raw: Mapping[str, Any], field: str, *, allow_empty: bool = False) -> str:
        """A string field; empty or whitespace-only strings are refused unless ``allow_empty``,
        and so are strings longer than :data:`MAX_TEXT_CHARS`."""
        value = self.require(raw, field)
        if not isinstance(value, str):
            raise self.fail(f"expected a string, got {_show(value)}", field)
        if not allow_empty and not value.strip():
            raise self.fail("must not be empty", field)
        self._check_length(value, field)
        return value

    def _check_length(self, value: str, field: str, item: int | None = None) -> None:
        if len(value) > MAX_TEXT_CHARS:
            where = f"item {item} " if item is not None else ""
            raise self.fail(
                f"{where}has {len(value):,} characters, more than the {MAX_TEXT_CHARS:,} any question may hold "
                "(far beyond a model's context)",
                field,
            )

    def optional_string(self, raw: Mapping[str, Any], field: str) -> str | None:
        """A string field that may be absent or null (social-group fields)."""
        value = raw.get(field)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"expected a string or null, got {_show(value)}", field)
        return value

    def integer(self, raw: Mapping[str, Any], field: str) -> int:
        """An integer field; integral floats (``2.0``) are accepted, booleans are not."""
        value = self.require(raw, field)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"expected an integer, got {_show(value)}", field)
        return value

    def index_1based(self, raw: Mapping[str, Any], field: str, num_choices: int) -> int:
        """A 1-based choice number, returned 0-based; out-of-range values are errors."""
        value = self.integer(raw, field)
        if not 1 <= value <= num_choices:
            raise self.fail(f"choice number {value} is out of range 1..{num_choices} (1-based)", field)
        return value - 1

    def string_list(self, raw: Mapping[str, Any], field: str, *, min_len: int = 0) -> list[str]:
        """A list of non-empty strings with at least ``min_len`` items."""
        value = self.require(raw, field)
        if not isinstance(value, list):
            raise self.fail(f"expected a list, got {_show(value)}", field)
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"item {i} must be a non-empty string, got {_show(item)}", field)
            self._check_length(item, field, i)
        if len(value) < min_len:
            raise self.fail(f"needs at least {min_len} items, got {len(value)}", field)
        return list(value)

    def choices(self, raw: Mapping[str, Any]) -> list[str]:
        """The ``choices`` list of a closed question (at least two)."""
        return self.string_list(raw, "choices", min_len=2)

    def labels(self, raw: Mapping[str, Any], field: str, num_choices: int, allowed: Collection[str]) -> list[str]:
        """A per-choice label list: one label per choice, each from ``allowed``."""
        labels = self.string_list(raw, field)
        if len(labels) != num_choices:
            raise self.fail(f"has {len(labels)} labels for {num_choices} choices", field)
        for i, label in enumerate(labels):
            if label not in allowed or label not in CHOICE_LABELS:
                raise self.fail(f"label {i} {label!r} is not one of {sorted(allowed)}", field)
        return labels

    def question(self, raw: Mapping[str, Any], *, prompt_field: str = "prompt", **fields: Any) -> Question:
        """Build the :class:`Question`; ``fields`` fill the optional columns."""
        defaults: dict[str, Any] = dict.fromkeys(
            ("turns", "choices", "choice_labels", "group", "context_condition", "answer_index")
        )
        defaults.update(fields)
        return Question(
            question_id=self.string(raw, "idx"),
            dataset=self.dataset,
            subset=self.subset,
            axis=self.axis,
            kind=self.kind,
            prompt=self.string(raw, prompt_field),
            source_fields=json.dumps(raw, ensure_ascii=False),
            **defaults,
        )


def _show(value: Any) -> str:
    """A short, readable rendering of an offending value."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
