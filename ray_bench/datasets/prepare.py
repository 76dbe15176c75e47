"""``prepare``: source files -> one validated Parquet file per dataset directory + a manifest.

Every requested dataset is loaded and validated before anything is written, so a bad
row leaves the output directory exactly as it was. Each Parquet file is then written
under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ray_bench.atomic import write_json_atomic
from ray_bench.datasets.loading import LoadedDataset, load_dataset
from ray_bench.datasets.sources import DEFAULT_TIMEOUT_S, Source
from ray_bench.datasets.specs import DatasetSpec, get_spec, is_design, resolve_names
from ray_bench.datasets.tables import parquet_path, questions_to_table, write_table_atomic
from ray_bench.errors import ConfigError, DatasetError, DownloadError
from ray_bench.schema import SCHEMA_VERSION

#: Manifest written next to the Parquet files.
MANIFEST_NAME = "manifest.json"
Log = Callable[[str], None]


@dataclass(frozen=True)
class PreparedDataset:
    """What ``prepare`` wrote for one dataset directory.

    Attributes:
        name: Directory name (Parquet file stem).
        family: Family name.
        kind: ``closed`` or ``open``.
        path: The Parquet file.
        count: Rows written.
        counts: Rows per axis.
        expected: Reference rows per axis present (``None`` where unknown).
        missing: Expected source files that were absent.
        conditions: Rows per BBQ context condition (empty for other datasets).
        warnings: Rows kept but not scorable as they stand (duplicate choice texts), each with
            its file, row and field; also sent to the log as ``Warning:`` lines.
    """

    name: str
    family: str
    kind: str
    path: str
    count: int
    counts: Mapping[str, int]
    expected: Mapping[str, int | None]
    missing: tuple[str, ...]
    conditions: Mapping[str, int]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrepareReport:
    """Result of :func:`prepare`.

    Attributes:
        source: The source as given (directory, URL or ``sample``).
        out_dir: The output directory.
        manifest: Path of the manifest file.
        prepared: One entry per Parquet file written.
        skipped: Datasets with no source file at all, with the files looked for.
        is_sample: True for the bundled sample set (its counts are not comparable to the reference).
        failed: Datasets that could not be made when every dataset was asked for (``names=None``),
            with the error; the others were written.
    """

    source: str
    out_dir: str
    manifest: str
    prepared: tuple[PreparedDataset, ...]
    skipped: Mapping[str, tuple[str, ...]]
    is_sample: bool = False
    failed: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def prepare(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    iat_stimuli: str | os.PathLike[str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    log: Log | None = None,
) -> PrepareReport:
    """Validate the requested datasets and write ``<out_dir>/<name>.parquet`` for each.

    Args:
        source: A directory in the repackaged layout, a base URL, ``public`` (the reference
            benchmark's URLs) or ``sample`` (the bundled sample set).
        out_dir: Output directory (created if needed).
        names: Directory or family names; ``None`` means all 17 directories.
        iat_stimuli: Path or URL of the IAT stimuli CSV (default: found next to the source,
            the bundled one for ``sample``, else the public URL).
        timeout: Seconds per download.
        log: Receives progress and warning lines (default: stderr).

    Returns:
        What was written, skipped and where the manifest is.

    Raises:
        DatasetError: A source file or row is invalid; nothing is written. With ``names=None``
            (every dataset) such a dataset is reported in ``PrepareReport.failed`` instead and
            the others are written.
        DownloadError: A remote file could not be fetched; as for ``DatasetError``.
        ConfigError: Bad source, or no dataset file found at all.
        UnknownNameError: An unknown dataset name.
    """
    emit = log or _stderr
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(
            f"--out {os.fspath(out_dir)!r} is an existing file, not a directory",
            hint="Pass a directory (it is created if needed) for the prepared questions.",
        )
    specs = [get_spec(n) for n in resolve_names(names)]
    designs = [s.name for s in specs if is_design(s.name)]
    if designs:
        raise ConfigError(
            f"{', '.join(designs)} is generated from its names table, not prepared from a source",
            hint="Run `ray-bench datasets housing --design v1|v2 --out DIR`.",
        )
    src = Source(source, timeout=timeout)
    stimuli = os.fspath(iat_stimuli) if iat_stimuli is not None else None
    failed: dict[str, str] = {}
    loaded, skipped = _load_all(specs, src, stimuli, emit, failed if names is None else None)
    out = Path(out_dir)
    prepared = _write_all(loaded, out, emit)
    manifest = _update_manifest(out, str(source), prepared, skipped, stimuli)
    return PrepareReport(str(source), str(out), str(manifest), tuple(prepared), skipped, src.is_sample, failed)


def _load_all(
    specs: list[DatasetSpec], src: Source, stimuli: str | None, emit: Log, failed: dict[str, str] | None = None
) -> tuple[list[LoadedDataset], dict[str, tuple[str, ...]]]:
    """Load every spec; with ``failed`` given, a dataset that fails is recorded there, not raised."""
    loaded, skipped = [], {}
    errors: list[Exception] = []
    for spec in specs:
        emit(f"Loading {spec.name} from {src.description} ...")
        try:
            result = load_dataset(spec, src, stimuli)
        except (DatasetError, DownloadError) as exc:
            if failed is None:
                raise
            failed[spec.name] = str(exc)
            errors.append(exc)
            emit(f"Warning: {spec.name} could not be prepared (the others go on): {exc}")
            continue
        if not result.counts:
            skipped[spec.name] = tuple(result.missing)
            emit(f"Warning: skipping {spec.name}: no source file found ({', '.join(result.missing)})")
            continue
        _warn_incomplete(result, src.is_sample, emit)
        loaded.append(result)
    if not loaded and errors:
        raise errors[0]
    if not loaded:
        raise ConfigError(
            f"no dataset file found in {src.description!r} for {', '.join(s.name for s in specs)}",
            hint="The source must hold closed_datasets/<Name>/<axis>.json and open_datasets/<Name>/<axis>.json.",
        )
    return loaded, skipped


def _write_all(loaded: list[LoadedDataset], out: Path, emit: Log) -> list[PreparedDataset]:
    # Build every table before writing any: a conversion failure must not leave a partial output.
    tables = [(item, questions_to_table(item.questions)) for item in loaded]
    prepared = []
    for item, table in tables:
        path = parquet_path(out, item.spec.name)
        write_table_atomic(table, path)
        prepared.append(_prepared_entry(item, path))
        emit(f"Wrote {path} ({table.num_rows} questions)")
    return prepared


def _warn_incomplete(item: LoadedDataset, is_sample: bool, emit: Log) -> None:
    # A row that cannot be scored is a problem of the data, sample or not.
    for warning in item.warnings:
        emit(f"Warning: {item.spec.name}: {warning}")
    # The sample set is partial by design: its gaps are recorded but not worth a warning.
    if is_sample:
        return
    if item.ignored:
        emit(f"Warning: {item.spec.name}: ignoring file(s) that are not known axes: {', '.join(item.ignored)}")
    if item.missing:
        emit(f"Warning: {item.spec.name}: {len(item.missing)} source file(s) absent: {', '.join(item.missing)}")
    for axis, count in item.counts.items():
        expected = item.spec.expected(axis)
        if expected is not None and count != expected:
            emit(f"Warning: {item.spec.name}/{axis} has {count} rows; the reference has {expected}")


def _prepared_entry(item: LoadedDataset, path: Path) -> PreparedDataset:
    conditions = Counter(q.context_condition for q in item.questions if q.context_condition)
    return PreparedDataset(
        name=item.spec.name,
        family=item.spec.family,
        kind=item.spec.kind,
        path=str(path),
        count=len(item.questions),
        counts=dict(item.counts),
        expected={axis: item.spec.expected(axis) for axis in item.counts},
        missing=tuple(item.missing),
        conditions=dict(sorted(conditions.items())),
        warnings=tuple(item.warnings),
    )


def _update_manifest(
    out: Path, source: str, prepared: list[PreparedDataset], skipped: Mapping[str, tuple[str, ...]], stimuli: str | None
) -> Path:
    path = out / MANIFEST_NAME
    manifest = _read_manifest(path)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for entry in prepared:
        record = asdict(entry)
        record.update(file=Path(entry.path).name, source=source, prepared_at=now)
        if get_spec(entry.name).generated:
            record["iat_stimuli"] = stimuli or "default"
        del record["path"]
        manifest["datasets"][entry.name] = record
    for name, missing in skipped.items():
        manifest["skipped"][name] = {"source": source, "missing": list(missing), "checked_at": now}
    for entry in prepared:
        manifest["skipped"].pop(entry.name, None)
    write_json_atomic(path, manifest)
    return path


def _read_manifest(path: Path) -> dict[str, Any]:
    fresh: dict[str, Any] = {
        "kind": "ray-bench datasets",
        "schema_version": SCHEMA_VERSION,
        "datasets": {},
        "skipped": {},
    }
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return fresh
    # Entries of other datasets are kept so that preparing in several runs accumulates.
    if isinstance(old, dict) and isinstance(old.get("datasets"), dict) and isinstance(old.get("skipped"), dict):
        fresh["datasets"].update(old["datasets"])
        fresh["skipped"].update(old["skipped"])
    return fresh


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
