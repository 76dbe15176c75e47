"""``ray-bench audit reference-gap`` and ``audit noise-floor``: the gap of a run's personas to a reference.

:func:`audit_reference_gap` reads a run (:func:`ray_bench.results.scan_run`), pairs the models as
``ray-bench analyze`` does, computes the four tables of
:mod:`ray_bench.analysis.reference_gap_tables` and writes them (Parquet + CSV, atomic) with
``reference_gap.json`` (reference, options, warnings). :func:`noise_floor_report` is the floor of
a reference table alone, for planning K before a run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ray_bench.datasets.reference import DEFAULT_REFERENCE
from ray_bench.errors import AnalysisError

if TYPE_CHECKING:
    import polars as pl

    from ray_bench.datasets.reference import ReferenceTable

META_FILE = "reference_gap.json"


class ReferenceGapConfig(BaseModel):
    """The configuration of ``ray-bench audit reference-gap`` (YAML keys = these fields).

    Attributes:
        results: The run's ``--out`` directory.
        out: Where the tables are written (nothing is written without it).
        data: The prepared questions; default: the directory the run's manifest records.
        reference: A table file or shipped name; default: ``Occupations.reference.json`` beside
            the prepared ``Occupations.parquet`` (the table the prompts came from).
        base, pairs, controls: Pairing, as for ``ray-bench analyze``.
        extractor: ``self_report`` or ``pronouns`` (docs/reference-gap.md).
        ci_method: ``bootstrap`` (multinomial) or ``dirichlet`` (Jeffreys posterior).
        bootstrap, permutations, floor_draws: Draws of the CIs, the paired tests and the noise floor.
        seed: Seeds every draw (each group derives its own).
        min_test_questions: Paired questions an occupation needs to be tested.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    results: Path
    out: Path | None = None
    data: Path | None = None
    reference: str | None = None
    base: str | None = None
    pairs: dict[str, str] | None = None
    controls: dict[str, str] | None = None
    extractor: str = "self_report"
    ci_method: str = "bootstrap"
    bootstrap: int = Field(default=1000, ge=2)
    permutations: int = Field(default=1000, ge=2)
    floor_draws: int = Field(default=10_000, ge=2)
    seed: int = 0
    min_test_questions: int = Field(default=10, ge=1)


@dataclass(frozen=True)
class ReferenceGapAudit:
    """What :func:`audit_reference_gap` computed (and wrote, when ``out_dir`` is set)."""

    reference: ReferenceTable
    tables: dict[str, pl.DataFrame]
    warnings: list[str] = field(default_factory=list)
    out_dir: Path | None = None
    seconds: float = 0.0


def resolve_reference(reference: str | None, data_dir: Path) -> ReferenceTable:
    """The named table, else the copy beside the prepared Occupations dataset.

    Raises:
        AnalysisError: no table was named and the dataset has no copy.
    """
    from ray_bench.datasets.occupations import REFERENCE_FILE, dataset_reference
    from ray_bench.datasets.reference import load_reference

    if reference is not None:
        return load_reference(reference)
    table = dataset_reference(data_dir)
    if table is None:
        raise AnalysisError(
            f"no reference table: {data_dir / REFERENCE_FILE} does not exist",
            hint="Pass --reference FILE_OR_NAME, or prepare the prompts with `ray-bench datasets occupations`.")
    return table


def audit_reference_gap(config: ReferenceGapConfig) -> ReferenceGapAudit:
    """Compute (and with ``config.out`` write) the reference-gap tables of one run.

    Raises:
        ResultsError: the run cannot be read.
        AnalysisError: nothing can be paired, the run has no Occupations answers, or the table
            does not fit the answers.
    """
    from ray_bench import provenance
    from ray_bench.analysis.reference_gap_tables import GapOptions, gap_warnings, reference_gap_tables
    from ray_bench.atomic import write_json_atomic
    from ray_bench.report.analyze import pair_models, write_table
    from ray_bench.results import scan_run

    started = time.time()
    run = scan_run(config.results, config.data)
    reference = resolve_reference(config.reference, run.data_dir)
    # Pairs as `ray-bench analyze` does; with nothing to pair, every model is its own base (the gap
    # of one model needs no partner).
    models, warnings = pair_models(run, pairs=config.pairs, base=config.base, controls=config.controls)
    options = GapOptions(extractor=config.extractor, ci_method=config.ci_method, n_bootstrap=config.bootstrap,
                         n_permutations=config.permutations, floor_draws=config.floor_draws, seed=config.seed,
                         min_n=config.min_test_questions)
    tables = reference_gap_tables(run.rows, models, reference, options)
    if not tables:
        raise AnalysisError(f"the run in {config.results} has no Occupations answers of a paired model",
                            hint="Run the prompts first: `ray-bench run --dataset Occupations --temperature 0.7 ...`.")
    warnings = [*warnings, *gap_warnings(tables, reference)]
    seconds = round(time.time() - started, 2)
    if config.out is not None:
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in tables.items():
            write_table(frame, out, name)
        write_json_atomic(out / META_FILE, {
            "results": str(Path(config.results).resolve()), "data": str(run.data_dir.resolve()),
            "config": config.model_dump(mode="json"), "reference": _reference_meta(reference),
            "tables": sorted(tables), "warnings": warnings, "seconds": seconds,
            "provenance": provenance.collect(),
        })
    return ReferenceGapAudit(reference, tables, warnings, config.out, seconds)


def _reference_meta(reference: ReferenceTable) -> dict[str, Any]:
    return {"name": reference.name, "version": reference.version, "year": reference.year,
            "illustrative": reference.illustrative, "digest": reference.digest(),
            "source": reference.source.model_dump(mode="json")}


def noise_floor_report(reference: str = DEFAULT_REFERENCE, ns: list[int] | None = None, *,
                       draws: int = 10_000, seed: int = 0) -> tuple[ReferenceTable, pl.DataFrame, pl.DataFrame]:
    """``(table, per occupation, summary)`` of the TV noise floor at each N (default 50 and 500).

    Raises:
        ConfigError / DatasetError: the table cannot be read.
        AnalysisError: an N below 1 or ``draws`` below 2.
    """
    from ray_bench.analysis.reference_gap_tables import noise_floor_table
    from ray_bench.datasets.reference import load_reference

    ns = list(ns or [50, 500])
    if min(ns) < 1 or draws < 2:
        raise AnalysisError(f"--n must be at least 1 and --draws at least 2, got n={ns}, draws={draws}",
                            hint="For example --n 50 --n 500 --draws 10000.")
    table = load_reference(reference)
    per, summary = noise_floor_table(table, ns, draws=draws, seed=seed)
    return table, per, summary
