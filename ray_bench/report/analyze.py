"""``ray-bench analyze``: read a run, compute every analysis table, write them with provenance.

The library function behind the CLI: :func:`analyze_run`. Reading is the results layer
(:func:`ray_bench.results.scan_run`), computing is the pure analysis
(:func:`ray_bench.analysis.study.analyze_frames`), and this module writes the tables as
Parquet and CSV (each atomically) plus ``analysis.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_bench.atomic import atomic_path, write_json_atomic
from ray_bench.config import AnalyzeConfig
from ray_bench.report.load import META_FILE

if TYPE_CHECKING:
    import polars as pl

ANALYSIS_JSON = META_FILE
#: Tables written only as Parquet (per-row data, too large for CSV).
PARQUET_ONLY = ("rows",)
_CSV_LIST_SEPARATOR = "; "


@dataclass(frozen=True)
class AnalysisOutput:
    """What :func:`analyze_run` wrote."""

    out_dir: Path
    tables: dict[str, pl.DataFrame]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def write_table(frame: pl.DataFrame, out_dir: Path, name: str, *, csv: bool = True) -> list[Path]:
    """Write ``frame`` as ``<name>.parquet`` (and ``<name>.csv``, lists joined by ``; ``), atomically."""
    import polars as pl

    paths = [out_dir / f"{name}.parquet"]
    with atomic_path(paths[0]) as tmp:
        frame.write_parquet(tmp)
    if csv:
        paths.append(out_dir / f"{name}.csv")
        flat = frame.with_columns(
            pl.col(c).cast(pl.List(pl.String)).list.join(_CSV_LIST_SEPARATOR)
            for c, dtype in frame.schema.items() if isinstance(dtype, pl.List)
        )
        with atomic_path(paths[1]) as tmp:
            flat.write_csv(tmp)
    return paths


def pair_models(
    run: Any, *, pairs: dict[str, str] | None = None, base: str | None = None, controls: dict[str, str] | None = None
) -> tuple[pl.DataFrame, list[str]]:
    """The model table of a scanned run (each variant with its base) and the scoring warnings."""
    from ray_bench.analysis.models import model_table, no_pair_error, resolve_pairs, scoring_warnings
    from ray_bench.results import model_settings

    settings = model_settings(run.manifest)
    present = {name: settings.get(name, {"path": None}) for name in run.model_names}
    # The housing audit and the reference gap are complete with one model (or several unpaired
    # ones): each is its own base. Only when nothing could be paired and no pairing was asked for.
    asked = bool(pairs or base or controls)
    pairing = resolve_pairs(present, pairs=pairs, base=base, controls=controls, allow_none=not asked)
    if not pairing:
        from ray_bench.analysis.housing import has_housing
        from ray_bench.analysis.models import unpaired_model_table
        from ray_bench.analysis.reference_gap_tables import has_occupations

        if not (has_housing(run.rows) or has_occupations(run.rows)):
            raise no_pair_error(present)
        return unpaired_model_table(present), []
    models = model_table(present, pairing)
    warnings = scoring_warnings(models)
    unpaired = sorted(set(present) - set(models["model"].to_list()))
    if unpaired:
        warnings.append(f"not paired with any base, left out: {', '.join(unpaired)} (use --pair VARIANT=BASE)")
    return models, warnings


def _audit_warnings(run: Any, tables: dict[str, pl.DataFrame], models: pl.DataFrame, options: Any) -> list[str]:
    """What the early stops, the housing audit, the reference gap and the coverage check have to say;
    adds the ``early_stops`` table of a ``run --stop-when-shifted`` (docs/audit.md)."""
    warnings: list[str] = []
    if run.manifest.get("shift_tests"):
        from ray_bench.analysis.shift import early_stop_table, early_stop_warnings

        tables["early_stops"] = early_stop_table(run.manifest["shift_tests"])
        warnings += early_stop_warnings(tables["early_stops"])
    if "housing_scores" in tables:  # docs/housing.md
        from ray_bench.analysis.housing import housing_warnings

        warnings += housing_warnings(tables["housing_scores"], models)
    if options.reference is not None and "reference_gap" in tables:
        from ray_bench.analysis.reference_gap_tables import gap_warnings

        warnings += gap_warnings(tables, options.reference)
    if "rows" in tables:
        from ray_bench.analysis.models import coverage_warnings

        warnings += coverage_warnings(run.rows, tables["rows"], models)
    return warnings


def analyze_run(config: AnalyzeConfig) -> AnalysisOutput:
    """Analyze one run directory and write every table into ``config.out``.

    Raises:
        ResultsError: the run cannot be read.
        AnalysisError: nothing can be paired, or the results hold duplicated questions.
    """
    from ray_bench import provenance
    from ray_bench.analysis.metrics import TestOptions
    from ray_bench.analysis.housing import HousingOptions
    from ray_bench.analysis.study import StudyOptions, analyze_frames
    from ray_bench.datasets.occupations import dataset_reference
    from ray_bench.results import scan_run

    started = time.time()
    run = scan_run(config.results, config.data, config.judge)
    models, warnings = pair_models(run, pairs=config.pairs, base=config.base, controls=config.controls)
    options = StudyOptions(
        tests=TestOptions(n_permutations=config.permutations, n_bootstrap=config.bootstrap, seed=config.seed,
                          min_n=config.min_test_questions),
        min_group_questions=config.min_group_questions, text_metrics=config.text_metrics,
        housing=HousingOptions(correction=config.housing_correction),
        reference=dataset_reference(run.data_dir),  # beside an Occupations prompt set (docs/reference-gap.md)
    )
    tables = analyze_frames(run.rows, models, options)
    warnings = [*warnings, *_audit_warnings(run, tables, models, options)]
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        write_table(frame, out, name, csv=name not in PARQUET_ONLY)
    seconds = round(time.time() - started, 2)
    write_json_atomic(out / ANALYSIS_JSON, {
        "results": str(Path(config.results).resolve()), "data": str(run.data_dir.resolve()),
        "config": config.model_dump(mode="json"),
        "options": {"n_permutations": config.permutations, "n_bootstrap": config.bootstrap, "seed": config.seed,
                    "min_group_questions": config.min_group_questions, "min_test_questions": config.min_test_questions,
                    "housing_correction": config.housing_correction},
        "pairs": {r["model"]: {"base": r["base"], "role": r["role"], "source": r["pair_source"]}
                  for r in models.iter_rows(named=True) if r["role"] != "base"},
        "tables": sorted(tables), "warnings": warnings, "seconds": seconds,
        "run_manifest": {"runs": run.manifest.get("runs", []), "models": run.manifest.get("models", {})},
        "provenance": provenance.collect(),
    })
    return AnalysisOutput(out_dir=out, tables=tables, warnings=warnings, seconds=seconds)
