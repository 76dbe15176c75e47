"""Reading a run back: result shards joined lazily with the prepared question tables.

The analysis needs what the shards do not store (choice labels, the correct / unknown /
target answer, social group, BBQ context condition): those live in the prepared question
tables, whose directory the run manifest records. :func:`scan_run` joins both lazily
(``pl.scan_parquet``), so nothing is materialized until the analysis collects.

Which files are read: the shard files the manifest records as done (not a glob), so a stray
copy such as ``shard-00001-copy.parquet`` is never counted. A run without a manifest falls
back to the ``*/*/shard-NNNNN.parquet`` layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_bench.errors import ResultsError
from ray_bench.results.shards import JUDGE_PREFIX, JUDGEMENT_GLOB, SHARD_GLOB, SHARD_NAME, shard_path

if TYPE_CHECKING:
    import polars as pl

MANIFEST_NAME = "manifest.json"
#: Columns of the prepared questions that the analysis joins onto the results.
QUESTION_COLUMNS = ("question_id", "subset", "choices", "choice_labels", "group", "context_condition", "answer_index")


@dataclass(frozen=True)
class RunData:
    """One run directory, ready for the analysis.

    Attributes:
        results_dir: The run's ``--out`` directory.
        data_dir: Where its prepared question tables were read from.
        rows: Result rows joined with their questions (lazy).
        manifest: The parsed ``manifest.json`` (empty when the run has none).
        files: The shard files that ``rows`` reads.
    """

    results_dir: Path
    data_dir: Path
    rows: pl.LazyFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    @property
    def model_names(self) -> list[str]:
        """Models that have at least one result shard, sorted."""
        return sorted({p.parent.parent.name for p in self.files})


def read_manifest(results_dir: Path) -> dict[str, Any]:
    """The run's manifest, or ``{}`` when there is none."""
    path = results_dir / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, RecursionError) as exc:
        what = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise ResultsError(
            f"cannot read {str(path)!r}: {what}", hint="Restore the manifest, or move it away to read the shards alone."
        ) from None
    if not isinstance(data, dict):
        raise ResultsError(f"{str(path)!r} does not hold a JSON object")
    return data


def shard_files(results_dir: Path, manifest: dict[str, Any]) -> list[Path]:
    """The shard files of a run: those the manifest records as done, else the standard layout."""
    shards = {k: e for k, e in (manifest.get("shards") or {}).items() if e.get("stage", "answer") == "answer"}
    if shards:
        files = [shard_path(results_dir, key) for key, entry in sorted(shards.items()) if entry.get("status") == "done"]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise ResultsError(
                f"the manifest of {str(results_dir)!r} lists {len(missing)} done shard(s) that are missing, "
                f"e.g. {missing[0]!r}",
                hint="Rerun the same `ray-bench run` command: it recomputes missing shards.",
            )
        return files
    return sorted(p for p in results_dir.glob(SHARD_GLOB) if SHARD_NAME.match(p.name))


def resolve_data_dir(results_dir: Path, manifest: dict[str, Any], data_dir: str | Path | None) -> Path:
    """``data_dir`` if given, else the manifest's (relative paths tried from CWD, then the run's parent)."""
    if data_dir is not None:
        return Path(data_dir)
    recorded = None
    for run in reversed(manifest.get("runs") or []):
        recorded = (run.get("config") or {}).get("data_dir")
        if recorded:
            break
    if not recorded:
        raise ResultsError(
            f"the run in {str(results_dir)!r} does not record its data directory",
            hint="Pass the prepared questions' directory with --data DIR.",
        )
    path = Path(recorded)
    for candidate in (path, results_dir.parent / path, results_dir / path):
        if candidate.is_dir():
            return candidate
    raise ResultsError(
        f"the data directory {recorded!r} recorded in the manifest of {str(results_dir)!r} does not exist here",
        hint="Pass the prepared questions' directory with --data DIR.",
    )


def prepared_questions(data_dir: Path, subset: str) -> Path:
    """The prepared question table of ``subset`` that a run's rows point at.

    Raises:
        ResultsError: it is not in ``data_dir`` (names the file).
    """
    path = Path(data_dir) / f"{subset}.parquet"
    if not path.is_file():
        raise ResultsError(
            f"the prepared questions of {subset!r} are missing: {str(path)!r}",
            hint="Pass the directory the run read its questions from with --data DIR.",
        )
    return path


def _scan_questions(data_dir: Path, subsets: list[str]) -> pl.LazyFrame:
    import polars as pl

    frames = []
    for subset in subsets:
        path = prepared_questions(data_dir, subset)
        frames.append(pl.scan_parquet(path).select(*QUESTION_COLUMNS, *_design_columns(subset)))
    # Design subsets add their columns (null on the other subsets' rows).
    return pl.concat(frames, how="diagonal_relaxed")


#: Joined only for generated audit designs (``Housing-v1``/``-v2``): their factors live in
#: ``source_fields`` (ray_bench/datasets/housing.py); other subsets do not need the JSON.
DESIGN_COLUMNS = ("source_fields",)


def _design_columns(subset: str) -> tuple[str, ...]:
    from ray_bench.datasets.specs import is_design

    return DESIGN_COLUMNS if is_design(subset) else ()


#: Judgement columns joined onto the open rows (``ray_bench.schema.judgement_schema``).
JUDGEMENT_COLUMNS = ("is_safe", "unsafe_categories", "p_unsafe", "judge_error", "judge")


def judgement_files(results_dir: Path, manifest: dict[str, Any], judge: str | None = None) -> dict[str, list[Path]]:
    """Judge name -> its judgement shard files (the manifest's done ones, else the standard layout).

    Raises:
        ResultsError: ``judge`` is given but did not judge this run.
    """
    found: dict[str, list[Path]] = {}
    shards = manifest.get("shards") or {}
    if shards:
        for key, entry in sorted(shards.items()):
            if entry.get("stage") == "judge" and entry.get("status") == "done":
                found.setdefault(str(entry.get("judge")), []).append(shard_path(results_dir, key))
    else:
        for path in sorted(results_dir.glob(JUDGEMENT_GLOB)):
            if SHARD_NAME.match(path.name):
                found.setdefault(path.parent.name.removeprefix(JUDGE_PREFIX), []).append(path)
    if judge is not None:
        if judge not in found:
            from ray_bench.errors import UnknownNameError

            raise UnknownNameError("judge", judge, sorted(found))
        return {judge: found[judge]}
    return found


def _join_judgements(rows: pl.LazyFrame, results_dir: Path, manifest: dict[str, Any], judge: str | None) -> pl.LazyFrame:
    """``rows`` with the verdicts of the run's judge (of ``judge`` when several judged it)."""
    import polars as pl

    judges = judgement_files(results_dir, manifest, judge)
    if not judges:
        return rows
    if len(judges) > 1:
        raise ResultsError(
            f"{str(results_dir)!r} was judged by {len(judges)} judges: {', '.join(sorted(judges))}",
            hint="Pick one with --judge NAME.",
        )
    (files,) = judges.values()
    _verify(files)
    verdicts = pl.scan_parquet([str(p) for p in files]).select("model", "subset", "question_id", *JUDGEMENT_COLUMNS)
    return rows.join(verdicts, on=["model", "subset", "question_id"], how="left")


def _verify(files: list[Path]) -> None:
    """Refuse to read a damaged shard (the analysis would die later without naming it)."""
    from ray_bench.errors import CorruptShardError
    from ray_bench.results.shards import verify_shard

    for path in files:
        problem = verify_shard(path)
        if problem is not None:
            raise CorruptShardError(
                f"shard {str(path)!r} is damaged: {problem}",
                hint="Rerun the `ray-bench run` command with --recompute-bad to recompute it, then analyze again.",
            )


def scan_run(results_dir: str | Path, data_dir: str | Path | None = None, judge: str | None = None) -> RunData:
    """Result rows of a run joined with their prepared questions, lazily.

    Args:
        results_dir: The ``--out`` directory of ``ray-bench run``.
        data_dir: The prepared questions; default: the directory the manifest records.
        judge: Whose verdicts to join when several judges judged the run.

    Returns:
        A :class:`RunData` whose ``rows`` have the result columns (``ray_bench.schema.result_schema``)
        plus ``choices``, ``choice_labels``, ``group``, ``context_condition``, ``answer_index``, when
        the run has a generated design (Housing) :data:`DESIGN_COLUMNS` (null on other rows) and,
        when the run was judged, :data:`JUDGEMENT_COLUMNS` (null on unjudged rows).

    Raises:
        ResultsError: no such directory, no shards, or the question tables cannot be found.
    """
    import polars as pl

    root = Path(results_dir)
    if not root.is_dir():
        raise ResultsError(f"results directory {str(root)!r} does not exist", hint="Pass the --out DIR of `ray-bench run`.")
    manifest = read_manifest(root)
    files = shard_files(root, manifest)
    if not files:
        raise ResultsError(
            f"no result shards under {str(root)!r} (expected {SHARD_GLOB})",
            hint="Run `ray-bench run ... --out DIR` first, then pass that DIR.",
        )
    _verify(files)
    data = resolve_data_dir(root, manifest, data_dir)
    subsets = sorted({p.parent.name for p in files})
    results = pl.scan_parquet([str(p) for p in files])
    rows = results.join(_scan_questions(data, subsets), on=["subset", "question_id"], how="left")
    rows = _join_judgements(rows, root, manifest, judge)
    return RunData(results_dir=root, data_dir=data, rows=rows, manifest=manifest, files=tuple(files))


def model_settings(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model: path, quantization card and how it was scored (engine, dtype, device, decoding).

    The scoring settings come from the last run whose config lists the model (later runs of
    the same directory may score other models), the real device and dtype from the engine
    info the model's actor reported.
    """
    out: dict[str, dict[str, Any]] = {}
    for run in manifest.get("runs") or []:
        if run.get("command", "run") not in ("run", "batch"):  # batch: `ray-bench batch collect`
            continue  # `ray-bench judge` runs configure a judge, not the evaluated models
        config = run.get("config") or {}
        engine = config.get("engine") or {}
        for model in config.get("models") or []:
            out[model["name"]] = {
                "path": model.get("path"),
                "engine": engine.get("name"),
                "dtype": engine.get("dtype"),
                "device": engine.get("device"),
                "temperature": engine.get("temperature"),
                "seed": engine.get("seed"),
                "system_prompt": engine.get("system_prompt"),
                "engine_options": engine.get("options") or {},
            }
    for name, entry in (manifest.get("models") or {}).items():
        info = out.setdefault(name, {"path": entry.get("path")})
        info["quantization_card"] = entry.get("quantization_card")
        reported = entry.get("engine") or {}
        for key in ("dtype", "device"):
            if reported.get(key):
                info[key] = reported[key]
        # What the engine computed for quantized activations (engines/hf_quant.py, vllm.py).
        info["activation_quantization"] = (reported.get("extra") or {}).get("activation_quantization")
    return out
