"""The whole pipeline on CPU, offline: tiny models, sample questions, local Ray, flips."""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


@dataclass
class DemoResult:
    """What the demo produced: the flip table, where things are, and step timings."""

    flips: pl.DataFrame
    out_dir: Path
    variant: str
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


def make_models(models_dir: Path) -> tuple[Path, Path, str]:
    """The tiny base model and its variant: RTN W4A16 when llmcompressor is installed,
    else a copy with small Gaussian weight noise (clearly labelled)."""
    from ray_bench.demo.tiny import build_tiny_model, perturb_model
    from ray_bench.quantize import quantize_model

    base = models_dir / "base"
    rtn = models_dir / "base-rtn-w4a16"
    with _quiet():
        if not (base / "config.json").exists():
            build_tiny_model(base, hidden_size=128, intermediate_size=256, num_layers=2, seed=0)
    if (rtn / "quantization_card.json").exists():
        return base, rtn, "rtn-w4a16"
    try:
        with _quiet():
            variant = quantize_model(base, models_dir, method="rtn", scheme="w4a16", name="base")
        return base, Path(variant), "rtn-w4a16"
    except Exception as exc:  # noqa: BLE001 - the demo must still run without the extra
        _log(f"RTN W4A16 quantization unavailable ({type(exc).__name__}: {exc}); using a perturbed copy")
    perturbed = models_dir / "base-perturbed"
    with _quiet():
        if not (perturbed / "config.json").exists():
            perturb_model(base, perturbed, scale=0.05, seed=1)
    return base, perturbed, "perturbed"


def run_demo(out_dir: str | Path, *, fresh: bool = False, progress: bool = True) -> DemoResult:
    """Build models, prepare the bundled sample, run both models through local Ray, analyze."""
    from ray_bench.analysis import flip_table
    from ray_bench.config import RunConfig
    from ray_bench.datasets import prepare
    from ray_bench.results import read_results
    from ray_bench.runner import run

    out = Path(out_dir)
    if fresh and out.exists():
        shutil.rmtree(out)
    seconds: dict[str, float] = {}
    t0 = time.time()
    _log("building the tiny base model and its variant")
    base, variant, kind = make_models(out / "models")
    seconds["models"] = time.time() - t0
    t0 = time.time()
    _log("preparing the bundled sample questions")
    report = prepare("sample", out / "data", log=lambda *_: None)
    _log(f"prepared {sum(d.count for d in report.prepared)} questions in {len(report.prepared)} datasets")
    names = [d.name for d in report.prepared]
    seconds["datasets"] = time.time() - t0
    t0 = time.time()
    _log("running both models through a local Ray cluster (CPU)")
    config = RunConfig(
        models=[f"base={base}", f"{kind}={variant}"],
        datasets=names,
        data_dir=out / "data",
        out_dir=out / "runs",
        engine={"name": "hf", "dtype": "float32", "device": "cpu", "max_new_tokens": 16},
        resources={"device": "cpu"},
        shard_size=100,
    )
    summary = run(config, progress=progress)
    seconds["run"] = time.time() - t0
    if not summary.ok:
        from ray_bench.errors import RayBenchError

        raise RayBenchError(f"demo run failed: {summary.failed}", hint="Rerun with RAY_BENCH_DEBUG=1.")
    flips = flip_table(read_results(out / "runs"), base="base")
    flips.write_csv(out / "flips.csv")
    return DemoResult(flips=flips, out_dir=out, variant=kind, seconds=seconds)
