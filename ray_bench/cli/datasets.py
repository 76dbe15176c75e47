"""`ray-bench datasets list|prepare`: what the bias datasets are, and turning them into Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ray_bench.cli.common import err_console, out_console

app = typer.Typer(no_args_is_help=True, help="List and prepare the bias datasets.")

LIST_EPILOG = (
    "Examples:\n\n"
    "  ray-bench datasets list\n\n"
    "  ray-bench datasets list --data data/"
)
PREPARE_EPILOG = (
    "Examples:\n\n"
    "  ray-bench datasets prepare --source sample --out data/\n\n"
    "  ray-bench datasets prepare --source ../shared/datasets/ptbb --out data/\n\n"
    "  ray-bench datasets prepare --source public --out data/ --dataset BBQ --dataset CEB-Recognition\n\n"
    "  ray-bench datasets prepare --source ../shared/datasets/ptbb --out data/ --dataset IAT "
    "--iat-stimuli ../shared/datasets/sources/iat_stimuli.csv"
)

HOUSING_EPILOG = (
    "Examples:\n\n"
    "  ray-bench datasets housing --design v2 --out data/\n\n"
    "  ray-bench datasets housing --design v1 --out data/ --source ../shared/datasets/housing"
)

OCCUPATIONS_EPILOG = (
    "Examples:\n\n"
    "  ray-bench datasets occupations --out data/\n\n"
    "  ray-bench datasets occupations --reference my-table.json --out data/ --samples 100\n\n"
    "  ray-bench run --model base=Qwen/Qwen2.5-0.5B-Instruct --dataset Occupations --data data/ "
    "--temperature 0.7 --out runs/occ"
)


@app.command("list", epilog=LIST_EPILOG)
def list_datasets(
    data: Annotated[
        Optional[Path], typer.Option("--data", help="Prepared directory: adds a column with its row counts.")
    ] = None,
) -> None:
    """Show every dataset directory with its family, kind, axes and reference row count.

    Reference rows are the reference benchmark's file sizes (BBQ: its ambiguous-context
    total; the files hold both contexts). The table goes to stdout. Family names (e.g.
    CEB-Recognition) may be used wherever a dataset name is accepted; they expand to
    their directories.
    """
    from rich.table import Table

    from ray_bench.datasets import dataset_names, get_spec, prepared_count

    table = Table("name", "family", "kind", "axes", "reference rows", box=None, pad_edge=False)
    if data is not None:
        table.add_column(f"prepared in {data}")
    for name in dataset_names():
        spec = get_spec(name)
        reference = _count(spec.expected_total)
        if spec.expected_ambiguous is not None:
            reference = f"{spec.expected_ambiguous:,} ambig"
        cells = [name, spec.family, spec.kind, ", ".join(spec.axes), reference]
        if data is not None:
            cells.append(_count(prepared_count(data, name), missing="-"))
        table.add_row(*cells)
    out_console.print(table)


@app.command("prepare", epilog=PREPARE_EPILOG)
def prepare_datasets(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="Directory with closed_datasets/ and open_datasets/, a base URL, 'public' "
            "(the reference benchmark's GitHub files, cached) or 'sample' (bundled demo set).",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output directory: one <dataset>.parquet each + manifest.json.")
    ],
    dataset: Annotated[
        Optional[list[str]], typer.Option("--dataset", help="Dataset or family name; repeatable (default: all).")
    ] = None,
    iat_stimuli: Annotated[
        Optional[str],
        typer.Option("--iat-stimuli", help="Path or URL of iat_stimuli.csv (default: next to --source, else GitHub)."),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per download.", min=0.1)] = 30.0,
) -> None:
    """Validate dataset files and write one Parquet file per dataset directory.

    Every requested dataset is checked before anything is written: a malformed file
    or row stops the command (naming the file, row and field) and leaves OUT as it was.
    Without --dataset (every dataset), a dataset that cannot be made is reported and the
    others are written; the command then exits 1.
    Source files that are absent are listed as warnings and in OUT/manifest.json, and so are
    closed questions whose choices repeat a text (kept, but runs give them an error row).
    Downloads are cached in $RAY_BENCH_CACHE (default ~/.cache/ray-bench).
    """
    from rich.table import Table

    from ray_bench.datasets import prepare

    report = prepare(source, out, dataset, iat_stimuli, timeout=timeout, log=_log)
    table = Table("name", "kind", "rows", "reference rows", "missing files", "file", box=None, pad_edge=False)
    for entry in report.prepared:
        expected = list(entry.expected.values())
        reference = None if None in expected else sum(v for v in expected if v is not None)
        shown = "-" if report.is_sample else _count(reference)
        table.add_row(entry.name, entry.kind, str(entry.count), shown, str(len(entry.missing)), entry.path)
    for name, missing in report.skipped.items():
        table.add_row(name, "-", "0", "-", str(len(missing)), "(skipped: no source file)")
    for name in report.failed:
        table.add_row(name, "-", "0", "-", "-", "(failed: see the error)")
    out_console.print(table)
    err_console.print(f"Manifest: {report.manifest}", markup=False, highlight=False)
    if report.failed:
        from ray_bench.errors import RayBenchError

        name, message = next(iter(report.failed.items()))
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        raise RayBenchError(
            f"{name} could not be prepared{more}: {message}",
            hint="The other datasets were written; fix the cause and prepare the failed ones with --dataset NAME.",
        )


@app.command("housing", epilog=HOUSING_EPILOG)
def housing_dataset(
    design: Annotated[str, typer.Option("--design", help="Design version: v1 (e-mail) or v2 (application form).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory: writes Housing-<design>.parquet.")],
    source: Annotated[
        Optional[Path],
        typer.Option("--source", help="Directory with audit_names.xlsx (default: ../shared/datasets/housing "
                     "next to the repository)."),
    ] = None,
) -> None:
    """Generate the housing audit (LLMs as landlords scoring tenants 0-100) as an open dataset.

    Reproduces the published full-factorial design: 240 names from audit_names.xlsx, each
    first name paired with its race's first two surnames, crossed with the design's control
    levels and 3 replicates (v1: 47,520 requests, v2: 21,600). Every factor is kept in
    source_fields; the balanced design is checked before anything is written. Read it back
    with read_questions(OUT, "Housing-<design>") or run it with --dataset Housing-<design>.
    """
    from ray_bench.datasets.housing import write_housing

    report = write_housing(design, out, source)
    out_console.print(
        f"{report.path}: {report.requests:,} requests, {report.distinct_prompts:,} distinct prompts, "
        f"{report.names} distinct names (design {report.design})",
        markup=False, highlight=False, soft_wrap=True,
    )


@app.command("occupations", epilog=OCCUPATIONS_EPILOG)
def occupations_dataset(
    out: Annotated[Path, typer.Option("--out", help="Output directory: writes Occupations.parquet and "
                                      "Occupations.reference.json.")],
    reference: Annotated[
        str, typer.Option("--reference", help="Reference table: a JSON file (docs/reference-gap.md) or a shipped "
                          "name.")
    ] = "bls-cps-2022-table11",
    samples: Annotated[int, typer.Option("--samples", help="Personas asked per occupation (K).")] = 50,
) -> None:
    """Generate the occupations prompt set: K persona requests per occupation of a reference table.

    Each prompt asks for a short persona ending in one parseable line (e.g. "Gender: <woman|man>;
    Race: <White|Black|Asian|other>; Ethnicity: <Hispanic|not Hispanic>"); the shares of the
    answers are compared with the table's by `ray-bench audit reference-gap`. The K samples of
    an occupation share one prompt: run with --temperature > 0 (each question gets its own
    seed) and without --reference-decoding, or every sample is the same answer. The table is
    copied beside the Parquet file so the analysis uses the same numbers.
    """
    from ray_bench.datasets.occupations import write_occupations

    report = write_occupations(out, reference, samples)
    label = " (illustrative numbers, not measured data)" if report.illustrative else ""
    out_console.print(
        f"{report.path}: {report.questions:,} questions = {report.occupations} occupations x {report.samples} "
        f"samples; reference {report.reference} {report.reference_version}{label} copied to {report.reference_path}",
        markup=False, highlight=False, soft_wrap=True,
    )


def _log(message: str) -> None:
    style = "yellow" if message.startswith("Warning:") else None
    err_console.print(message, style=style, markup=False, highlight=False)


def _count(value: int | None, missing: str = "?") -> str:
    return missing if value is None else f"{value:,}"
