"""Reference distributions: the category shares a model's answers are compared with.

A reference table is one JSON file (format ``schema_version`` 1, docs/reference-gap.md):

* ``name``, ``version``, ``title``, ``year``, ``population``: what the numbers describe;
* ``source``: ``citation``, ``url``, optional ``table``, ``transcription`` (how the numbers got
  here) and ``notes`` (how categories were derived); ``illustrative: true`` marks a table
  whose numbers are *not* measured data (reports say so);
* ``attributes``: per attribute (e.g. ``gender``, ``race``) its ``label`` (the field name the
  prompt asks for, e.g. ``Gender``), ``categories`` (the answer options, in order) and
  ``synonyms`` (other answers that mean a category, e.g. ``female`` -> ``woman``);
* ``occupations``: per occupation its ``name`` (a singular noun phrase used in the prompt),
  optional ``title`` (the source's row label), ``article`` (``a``/``an``, default by its first
  letter), ``employment`` (a weight, e.g. thousands employed; all or none), ``shares``
  (attribute -> category -> share in [0, 1], summing to 1 within :data:`SHARE_TOLERANCE`) and
  ``published`` (the source's own numbers, kept for audit, never read by the metrics).

Shares are divided by their sum where they are used (rounded sources sum to 0.999 or 1.001);
a sum further from 1 than :data:`SHARE_TOLERANCE` is an error. Shipped tables live next to
this module (:func:`shipped_references`); datasets/occupations.md is their data card.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ray_bench.errors import ConfigError, DatasetError, UnknownNameError

if TYPE_CHECKING:
    import numpy as np

#: The file format this module reads.
SCHEMA_VERSION = 1
#: How far a share vector's sum may be from 1 (rounded sources); beyond it the file is refused.
SHARE_TOLERANCE = 0.005
#: The table used when none is named: BLS CPS Table 11, 2022 annual averages (20 occupations).
DEFAULT_REFERENCE = "bls-cps-2022-table11"
_HERE = Path(__file__).resolve().parent
_NAME = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Where a table's numbers come from (all shown in reports and the data card)."""

    citation: str = Field(min_length=1)
    url: str = Field(min_length=1)
    table: str | None = None
    transcription: str | None = None
    notes: str | None = None


class Attribute(_Strict):
    """One demographic attribute: its categories, the prompt's field label and answer synonyms."""

    name: str = Field(pattern=_NAME)
    label: str = Field(min_length=1)
    categories: tuple[str, ...] = Field(min_length=2)
    synonyms: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    description: str | None = None


class Occupation(_Strict):
    """One row of the table: an occupation and its shares per attribute."""

    name: str = Field(min_length=1)
    title: str | None = None
    article: str | None = Field(default=None, pattern=r"^(a|an)$")
    employment: float | None = Field(default=None, gt=0)
    shares: dict[str, dict[str, float]]
    published: dict[str, float] | None = None

    @property
    def with_article(self) -> str:
        """``a registered nurse`` / ``an electrician`` (``article`` overrides the first-letter rule)."""
        article = self.article or ("an" if self.name[:1].lower() in "aeiou" else "a")
        return f"{article} {self.name}"


class ReferenceTable(_Strict):
    """A validated reference table (build it with :func:`load_reference` or :func:`reference_from_dict`)."""

    schema_version: int
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str = Field(min_length=1)
    title: str = Field(min_length=1)
    year: int = Field(ge=1800, le=2200)
    illustrative: bool
    population: str | None = None
    employment_unit: str | None = None
    source: Source
    attributes: tuple[Attribute, ...] = Field(min_length=1)
    occupations: tuple[Occupation, ...] = Field(min_length=1)

    def attribute(self, name: str) -> Attribute:
        """The attribute called ``name`` (:class:`UnknownNameError` otherwise)."""
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        raise UnknownNameError("attribute", name, [a.name for a in self.attributes])

    def occupation_names(self) -> list[str]:
        """Occupation names in table order."""
        return [o.name for o in self.occupations]

    def shares(self, attribute: str) -> np.ndarray:
        """``[occupations, categories]`` shares of ``attribute`` (category order), each row summing to 1."""
        import numpy as np

        cats = self.attribute(attribute).categories
        q = np.array([[o.shares[attribute][c] for c in cats] for o in self.occupations], dtype=float)
        return q / q.sum(axis=1, keepdims=True)

    def weights(self) -> np.ndarray | None:
        """Employment weights per occupation (table order), or ``None`` when the table has none."""
        import numpy as np

        if self.occupations[0].employment is None:
            return None
        return np.array([o.employment for o in self.occupations], dtype=float)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: which exact numbers an analysis used."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_json(self) -> str:
        """The table as JSON, in the file format (reads back to an equal table)."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=1, ensure_ascii=False) + "\n"


def normalize_answer(text: str) -> str:
    """Lower-case, inner whitespace collapsed, surrounding punctuation removed: how answers are compared."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text.strip(" .,;:!?\"'`*_()[]{}<>")


def shipped_references() -> list[str]:
    """Names of the reference tables shipped with ray-bench (``ray_bench/datasets/reference/*.json``)."""
    return sorted(p.stem for p in _HERE.glob("*.json"))


def reference_path(source: str | os.PathLike[str]) -> Path:
    """The file of a shipped table's name, or ``source`` itself as a path.

    Raises:
        ConfigError: neither a shipped name nor an existing file.
    """
    text = os.fspath(source)
    if text in shipped_references():
        return _HERE / f"{text}.json"
    path = Path(text)
    if not path.is_file():
        raise ConfigError(
            f"reference table not found: {text!r} is neither a file nor a shipped table",
            hint=f"Pass a JSON file (docs/reference-gap.md) or one of: {', '.join(shipped_references())}.",
        )
    return path


def load_reference(source: str | os.PathLike[str] = DEFAULT_REFERENCE) -> ReferenceTable:
    """Read and validate a reference table: a shipped table's name or a JSON file's path.

    Raises:
        ConfigError: the table does not exist.
        DatasetError: the file is not JSON or not a valid table (names the file, the occupation's
            row and the field).
    """
    path = reference_path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read the reference table: {exc}", file=str(path)) from None
    return reference_from_dict(data, file=str(path))


def reference_from_dict(data: Any, *, file: str = "<reference>") -> ReferenceTable:
    """Validate a parsed table (``dict``); ``file`` names it in errors.

    Raises:
        DatasetError: on the first problem, naming ``file``, the occupation row and the field.
    """
    if not isinstance(data, dict):
        raise DatasetError(f"a reference table is a JSON object, got {type(data).__name__}", file=file)
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(f"unsupported schema_version {version!r} (this ray-bench reads {SCHEMA_VERSION})",
                           file=file, field="schema_version", hint=_HINT)
    try:
        table = ReferenceTable.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, data, file) from None
    _check_attributes(table, file)
    _check_occupations(table, file)
    return table


_HINT = "Fix the reference table (format: docs/reference-gap.md) and run the command again."


def _validation_error(exc: ValidationError, data: dict, file: str) -> DatasetError:
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    row = int(loc[1]) if len(loc) > 1 and loc[0] == "occupations" and loc[1].isdigit() else None
    what = first["msg"]
    if row is not None:
        name = (data.get("occupations") or [{}])[row]
        what = f"occupation {name.get('name')!r}: {what}" if isinstance(name, dict) else what
    field = ".".join(loc[2:] if row is not None else loc) or None
    return DatasetError(what, file=file, row=row, field=field, hint=_HINT)


def _check_attributes(table: ReferenceTable, file: str) -> None:
    names = [a.name for a in table.attributes]
    if len(set(names)) != len(names):
        raise DatasetError(f"attribute names repeat: {names}", file=file, field="attributes", hint=_HINT)
    for attribute in table.attributes:
        field = f"attributes.{attribute.name}"
        seen: dict[str, str] = {}
        answers = [(c, c) for c in attribute.categories]
        for category, words in attribute.synonyms.items():
            if category not in attribute.categories:
                raise DatasetError(f"synonyms name {category!r}, not a category of {list(attribute.categories)}",
                                   file=file, field=f"{field}.synonyms", hint=_HINT)
            answers += [(category, w) for w in words]
        for category, answer in answers:
            key = normalize_answer(answer)
            if not key:
                raise DatasetError(f"empty category or synonym for {category!r}", file=file, field=field, hint=_HINT)
            if seen.get(key, category) != category:
                raise DatasetError(f"answer {answer!r} would mean both {seen[key]!r} and {category!r}",
                                   file=file, field=f"{field}.synonyms", hint=_HINT)
            seen[key] = category


def _check_occupations(table: ReferenceTable, file: str) -> None:
    expected = {a.name: a.categories for a in table.attributes}
    seen: set[str] = set()
    with_weight = sum(o.employment is not None for o in table.occupations)
    for row, occ in enumerate(table.occupations):
        where = {"file": file, "row": row, "hint": _HINT}
        key = occ.name.strip().lower()
        if key in seen:
            raise DatasetError(f"occupation {occ.name!r} appears twice", field="name", **where)
        seen.add(key)
        if 0 < with_weight < len(table.occupations) and occ.employment is None:
            raise DatasetError(f"occupation {occ.name!r} has no employment, but {with_weight} of "
                               f"{len(table.occupations)} occupations have one (give all or none)",
                               field="employment", **where)
        if set(occ.shares) != set(expected):
            raise DatasetError(f"occupation {occ.name!r} has shares for {sorted(occ.shares)}, the table's "
                               f"attributes are {sorted(expected)}", field="shares", **where)
        for attribute, categories in expected.items():
            _check_shares(occ, attribute, categories, where)


def _check_shares(occ: Occupation, attribute: str, categories: tuple[str, ...], where: dict) -> None:
    shares = occ.shares[attribute]
    field = f"shares.{attribute}"
    if set(shares) != set(categories):
        raise DatasetError(f"occupation {occ.name!r} has {attribute} categories {sorted(shares)}, expected "
                           f"{list(categories)}", field=field, **where)
    for category, value in shares.items():
        if not 0.0 <= value <= 1.0:  # NaN fails both comparisons
            raise DatasetError(f"occupation {occ.name!r}: share {value!r} is not in [0, 1]",
                               field=f"{field}.{category}", **where)
    total = sum(shares.values())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise DatasetError(f"occupation {occ.name!r}: {attribute} shares sum to {total:.4f}, not 1 "
                           f"(tolerance {SHARE_TOLERANCE})", field=field, **where)
