"""The whole pipeline on CPU, offline: tiny models, sample questions, local Ray, analysis, report."""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl


#: Factor on the tiny model's output head: spreads its choice distributions over the low,
#: medium and high entropy bins (measured on the bundled sample: 20 / 11 / 14 of 45 closed
#: questions at 32, all 45 "high" at 1; see ray_bench/demo/tiny.py:sharpen_head).
HEAD_SCALE = 32.0


@dataclass
class DemoResult:
    """What the demo produced: the analysis tables, the report, where things are, step timings."""

    tables: dict[str, pl.DataFrame]
    out_dir: Path
    variants: list[str]
    report: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _log(message: str) -> None:
    sys.stderr.write(f"[demo] {message}\n")


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    """Hold back library chatter (progress bars, llmcompressor logs) unless something fails."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
            yield buf
    except BaseException:
        sys.stderr.write(buf.getvalue()[-4000:])
        raise


def make_models(models_dir: Path) -> tuple[Path, dict[str, Path]]:
    """The tiny base model (random weights, sharpened head) and its variants: RTN W4A16 and
    W8A16 when llmcompressor is installed, else a copy with small Gaussian weight noise."""
    from ray_bench.demo.tiny import build_tiny_model, perturb_model, sharpen_head
    from ray_bench.quantize import quantize_model

    base = models_dir / "base"
    with _quiet():
        if not (base / "config.json").exists():
            build_tiny_model(base, hidden_size=128, intermediate_size=256, num_layers=2, seed=0)
            sharpen_head(base, HEAD_SCALE)
    variants: dict[str, Path] = {}
    try:
        for scheme in ("w4a16", "w8a16"):
            path = models_dir / f"base-rtn-{scheme}"
            if not (path / "quantization_card.json").exists():
                with _quiet():
                    path = Path(quantize_model(base, models_dir, method="rtn", scheme=scheme, name="base"))
            variants[f"rtn-{scheme}"] = path
        return base, variants
    except Exception as exc:  # noqa: BLE001 - the demo must still run without the extra
        _log(f"RTN quantization unavailable ({type(exc).__name__}: {exc}); using a perturbed copy")
    perturbed = models_dir / "base-perturbed"
    with _quiet():
        if not (perturbed / "config.json").exists():
            perturb_model(base, perturbed, scale=0.05, seed=1)
    return base, {"perturbed": perturbed}


def _run_config(models: list[str], out: Path, names: list[str], dtype: str) -> Any:
    from ray_bench.config import RunConfig

    # No Llama Guard weights offline: the dummy engine stands in as the judge (hash-based verdicts
    # in Llama Guard's format), so the judge stage and the safety tables run for real on CPU.
    judge = {"model": "stand-in-guard=dummy/llama-guard", "engine": {"name": "dummy"}, "resources": {"device": "cpu"}}
    return RunConfig(
        models=models, datasets=names, data_dir=out / "data", out_dir=out / "runs",
        engine={"name": "hf", "dtype": dtype, "device": "cpu", "max_new_tokens": 16},
        resources={"device": "cpu"}, shard_size=100, judge=judge,
    )


def _run_models(out: Path, base: Path, variants: dict[str, Path], names: list[str], progress: bool) -> None:
    """The base and variants in float32, then the base again in bfloat16 as a numerical-noise control."""
    from ray_bench.errors import RayBenchError
    from ray_bench.runner import run

    for models, dtype in (([f"base={base}", *(f"{k}={v}" for k, v in variants.items())], "float32"),
                          ([f"base-bf16={base}"], "bfloat16")):
        summary = run(_run_config(models, out, names, dtype), progress=progress)
        if not summary.ok:
            raise RayBenchError(f"demo run failed: {summary.failed}", hint="Rerun with RAY_BENCH_DEBUG=1.")


def run_demo(out_dir: str | Path, *, fresh: bool = False, progress: bool = True) -> DemoResult:
    """Build models, prepare the bundled sample, run them through local Ray, analyze, report."""
    from ray_bench.config import AnalyzeConfig
    from ray_bench.datasets import prepare
    from ray_bench.demo.housing import SLICE_SIZE, write_housing_slice
    from ray_bench.report.analyze import analyze_run
    from ray_bench.report.html import write_report

    out = Path(out_dir)
    if fresh and out.exists():
        shutil.rmtree(out)
    seconds: dict[str, float] = {}
    t0 = time.time()
    _log("building the tiny base model (sharpened head) and its RTN variants")
    base, variants = make_models(out / "models")
    seconds["models"] = time.time() - t0
    t0 = time.time()
    report = prepare("sample", out / "data", log=lambda *_: None)
    _log(f"prepared {sum(d.count for d in report.prepared)} sample questions in {len(report.prepared)} datasets")
    # A small slice of the housing audit (v2): its report section has every table (docs/housing.md).
    housing = write_housing_slice(out / "data")
    _log(f"wrote a {SLICE_SIZE}-question slice of the housing audit (v2 design) to {housing.name}")
    seconds["datasets"] = time.time() - t0
    t0 = time.time()
    _log("running the models through a local Ray cluster (CPU) and judging their open answers (a stand-in judge),"
         " then the base again in bfloat16 as a control")
    _run_models(out, base, variants, [d.name for d in report.prepared] + [housing.stem], progress)
    seconds["run"] = time.time() - t0
    t0 = time.time()
    _log("analyzing: flips, bias metrics, permutation tests, groups, rankings")
    # The sample has 4-8 questions per dataset: the demo lowers the minimum group sizes (50 and
    # 10 by default) so that every table and figure has content; its tests have no power.
    config = AnalyzeConfig(results=out / "runs", out=out / "analysis", controls={"base-bf16": "base"},
                           min_group_questions=1, min_test_questions=3)
    analysis = analyze_run(config)
    seconds["analyze"] = time.time() - t0
    t0 = time.time()
    written = write_report(out / "analysis", out / "report.html")
    seconds["report"] = time.time() - t0
    return DemoResult(tables=analysis.tables, out_dir=out, variants=list(variants), report=Path(written.html),
                      seconds=seconds)
