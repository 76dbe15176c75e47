"""Prepared question tables: Parquet write (atomic) and read (schema-checked).

``pyarrow`` is imported inside the functions so that importing the package stays light.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ray_bench.atomic import atomic_path
from ray_bench.datasets.records import Question
from ray_bench.datasets.specs import DATASETS, DESIGN_DATASETS, get_spec
from ray_bench.errors import ConfigError, DatasetError
from ray_bench.schema import SCHEMA_VERSION, question_schema

if TYPE_CHECKING:
    import pyarrow as pa

_PREPARE_HINT = "Run `ray-bench datasets prepare --source DIR_OR_URL_OR_sample --out {out} --dataset {name}`."


def parquet_path(data_dir: str | os.PathLike[str], name: str) -> Path:
    """Where ``prepare`` writes dataset ``name``: ``<data_dir>/<name>.parquet``."""
    return Path(data_dir) / f"{name}.parquet"


def questions_to_table(questions: Sequence[Question]) -> pa.Table:
    """Build a table with exactly :func:`ray_bench.schema.question_schema`."""
    import pyarrow as pa

    return pa.Table.from_pylist([q.as_row() for q in questions], schema=question_schema())


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write Parquet to a temporary name in the same folder, then rename over ``path``.

    A reader never sees a half-written file and a failure leaves any old file untouched.
    """
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_questions(data_dir: str | os.PathLike[str], name: str) -> pa.Table:
    """Load the prepared questions of one dataset directory.

    Args:
        data_dir: The ``--out`` directory of ``ray-bench datasets prepare``.
        name: A dataset directory name such as ``BBQ`` or ``CEB-Recognition-S``.

    Returns:
        The table, with schema :func:`ray_bench.schema.question_schema`.

    Raises:
        UnknownNameError: ``name`` is not a dataset.
        ConfigError: ``name`` is a family of several directories, or the dataset is not prepared.
        DatasetError: The file is unreadable or has another schema (e.g. an older version).
    """
    import pyarrow.parquet as pq

    _check_directory_name(name)
    path = parquet_path(data_dir, name)
    hint = _PREPARE_HINT.format(out=data_dir, name=name)
    if not path.is_file():
        raise ConfigError(f"dataset {name!r} is not prepared in {str(data_dir)!r} (no {path.name})", hint=hint)
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DatasetError(f"cannot read prepared dataset: {exc}", file=str(path), hint=hint) from None
    _check_schema(table, path, hint)
    # Parquet names list children "element" where Arrow says "item"; cast so callers get the exact schema.
    return table.cast(question_schema())


def prepared_count(data_dir: str | os.PathLike[str], name: str) -> int | None:
    """Rows of a prepared dataset from the Parquet footer, ``None`` when not prepared or unreadable."""
    import pyarrow.parquet as pq

    path = parquet_path(data_dir, name)
    if not path.is_file():
        return None
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # an unreadable file simply counts as not prepared in listings
        return None


def _check_directory_name(name: str) -> None:
    if name in DATASETS or name in DESIGN_DATASETS:
        return
    members = [n for n in DATASETS if DATASETS.get(n).family == name]
    members = members or [n for n in DESIGN_DATASETS if DESIGN_DATASETS.get(n).family == name]
    if members:
        raise ConfigError(
            f"{name!r} is a dataset family; read one of its directories: {', '.join(members)}",
            hint="Expand family names with ray_bench.datasets.resolve_names().",
        )
    get_spec(name)  # raises UnknownNameError with a suggestion


def _check_schema(table: pa.Table, path: Path, hint: str) -> None:
    expected = question_schema()
    metadata = table.schema.metadata or {}
    version = metadata.get(b"ray_bench.schema_version", b"?").decode()
    if version != str(SCHEMA_VERSION) or not table.schema.equals(expected, check_metadata=False):
        raise DatasetError(
            f"prepared file has another schema (version {version}, expected {SCHEMA_VERSION}): "
            f"columns {table.schema.names}",
            file=str(path),
            hint=hint,
        )
