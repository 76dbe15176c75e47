"""The Ray runner's overhead: the real runner against the same engine in-process, side by side.

:func:`run_runner_benchmark` writes N synthetic closed questions (question schema, three
choices) as a prepared ``BBQ`` dataset in a temporary data directory, then, per shard size,
runs them two ways over the ``dummy`` engine, which sleeps ``delay_s`` per question:

* **ray**: :func:`ray_bench.runner.driver.run` with a :class:`~ray_bench.config.RunConfig`
  (device ``cpu``, ``replicas`` actors, progress off) into a fresh output directory: the whole
  ``ray-bench run`` path (validation, reading the dataset, planning, manifest, actor start and
  engine creation, shipping shards to the actor and back, writing every shard file);
* **in-process**: the same work without Ray in this process: read the dataset with
  :func:`~ray_bench.datasets.read_questions`, create the engine with
  :func:`~ray_bench.engines.base.create_engine`, and per planned shard (same slices, same
  fingerprints) :func:`~ray_bench.stages.answer_rows.process_shard` and
  :func:`~ray_bench.results.write_shard` into a fresh directory. So both walls include the
  same I/O; the difference is what the Ray runner adds.

Ray starts once (:func:`~ray_bench.runner.session.ray_session` around all rounds); its
startup is timed and reported apart, not in any wall. Rounds are interleaved: every round runs
every shard size, each size both approaches, their order alternating round by round (ray
first in even rounds) so that drift and warm-up hit both. Per shard size the best round of
each approach is reported. Engine time is nominal, ``questions x delay_s``; overhead is
``(ray - in-process) / in-process`` and, the issue's target, ``(ray - in-process) / engine``
(<= 10% at the default shard size, 1000). With ``replicas`` > 1 the Ray run overlaps several
engines while the in-process baseline runs one, so a negative overhead then means the
parallel speedup outweighs the runner's cost.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: The prepared dataset the synthetic questions are written as (a real name: the driver resolves it).
DATASET = "BBQ"
#: The benchmark's model name (a hub-style id: the dummy engine reads no files).
MODEL = "bench=bench/dummy"
#: The issue's target: Ray overhead at most this share of the engine time, at :data:`TARGET_SHARD_SIZE`.
TARGET_SHARE = 0.10
#: The shard size the target applies to (``RunConfig``'s default).
TARGET_SHARD_SIZE = 1000
#: The approaches, in the order of even rounds.
APPROACHES = ("ray", "in-process")


@dataclass(frozen=True)
class RunnerBenchOptions:
    """What :func:`run_runner_benchmark` runs.

    Attributes:
        questions: Synthetic closed questions (one dataset).
        delay_s: The dummy engine's sleep per question (the fixed per-question cost).
        shard_sizes: Questions per shard, one measurement each.
        rounds: Interleaved rounds; the best per approach and shard size is reported.
        replicas: Ray actors of the model.
        work_dir: Keep the data and every run's output here (``None``: a temporary directory,
            deleted at the end).
    """

    questions: int = 10_000
    delay_s: float = 0.001
    shard_sizes: tuple[int, ...] = (100, TARGET_SHARD_SIZE, 5000)
    rounds: int = 2
    replicas: int = 1
    work_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.questions < 1 or self.rounds < 1 or self.replicas < 1 or self.delay_s < 0:
            raise ValueError(f"invalid runner benchmark options: {self}")
        if not self.shard_sizes or min(self.shard_sizes) < 1:
            raise ValueError(f"shard sizes must be positive, got {self.shard_sizes}")


@dataclass(frozen=True)
class ApproachRun:
    """One approach's run at one shard size in one round.

    Attributes:
        seconds: Wall time of the whole run.
        out_dir: Where its shard files are.
        rows: Result rows in its shard files (counted from the files).
        actor_seconds: Ray only: time the actors spent in their shard tasks (from the manifest).
        first_shard_after_s: Ray only: from the run's start until the first shard started on an actor.
    """

    seconds: float
    out_dir: Path
    rows: int
    actor_seconds: float | None = None
    first_shard_after_s: float | None = None


@dataclass(frozen=True)
class RoundTiming:
    """Both approaches at one shard size in one round; ``first`` is the approach that ran first."""

    round: int
    first: str
    ray: ApproachRun
    in_process: ApproachRun

    @property
    def overhead_s(self) -> float:
        """Ray's wall minus the in-process wall of this round."""
        return self.ray.seconds - self.in_process.seconds


@dataclass(frozen=True)
class ShardSizeResult:
    """Every round at one shard size, and the overhead from the best walls."""

    shard_size: int
    shards: int
    engine_s: float
    rounds: tuple[RoundTiming, ...]

    @property
    def ray_s(self) -> float:
        """Best Ray wall over the rounds."""
        return min(r.ray.seconds for r in self.rounds)

    @property
    def in_process_s(self) -> float:
        """Best in-process wall over the rounds."""
        return min(r.in_process.seconds for r in self.rounds)

    @property
    def overhead(self) -> float:
        """``(ray - in-process) / in-process`` of the best walls."""
        return (self.ray_s - self.in_process_s) / self.in_process_s

    @property
    def overhead_of_engine(self) -> float | None:
        """``(ray - in-process) / engine time`` of the best walls (``None`` with no engine time)."""
        return (self.ray_s - self.in_process_s) / self.engine_s if self.engine_s > 0 else None


@dataclass(frozen=True)
class RunnerBenchResult:
    """What :func:`run_runner_benchmark` measured."""

    options: RunnerBenchOptions
    engine_s: float
    ray_startup_s: float
    cpu_count: int
    sizes: tuple[ShardSizeResult, ...]
    load_average_after: float | None = None
    target_share: float = TARGET_SHARE
    target_shard_size: int = TARGET_SHARD_SIZE

    @property
    def all_processed(self) -> bool:
        """Every run of both approaches wrote a result row for every question."""
        n = self.options.questions
        return all(r.ray.rows == n and r.in_process.rows == n for s in self.sizes for r in s.rounds)

    @property
    def target_passed(self) -> bool | None:
        """Overhead <= the target share of engine time at the target shard size (``None``: not measured)."""
        for size in self.sizes:
            if size.shard_size == self.target_shard_size and size.overhead_of_engine is not None:
                return size.overhead_of_engine <= self.target_share
        return None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the records plus the derived walls and overheads."""
        out = json.loads(json.dumps(asdict(self), default=str))
        for size, entry in zip(self.sizes, out["sizes"]):
            entry.update(ray_s=size.ray_s, in_process_s=size.in_process_s, overhead=size.overhead,
                         overhead_of_engine=size.overhead_of_engine)
        out.update(all_processed=self.all_processed, target_passed=self.target_passed)
        return out


def synthetic_questions(n: int):
    """``n`` closed three-choice questions in the question schema, as a ``BBQ`` table (ambiguous contexts)."""
    import pyarrow as pa

    from ray_bench.schema import question_schema

    rows = [
        {
            "question_id": f"bench/{i}", "dataset": DATASET, "subset": DATASET, "axis": "age", "kind": "closed",
            "prompt": f"Context {i % 97}. Question {i}: who was late?", "turns": None,
            "choices": ["The old man", "The young man", "Cannot be determined"],
            "choice_labels": ["biased", "unbiased", "uncertain"], "group": "old",
            "context_condition": "ambig", "answer_index": 2, "source_fields": json.dumps({"i": i}),
        }
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=question_schema())


def write_dataset(data_dir: Path, n: int) -> Path:
    """Write :func:`synthetic_questions` where the driver reads ``BBQ``; returns the file."""
    from ray_bench.datasets.tables import parquet_path, write_table_atomic

    path = parquet_path(data_dir, DATASET)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table_atomic(synthetic_questions(n), path)
    return path


def count_rows(out_dir: Path) -> int:
    """Result rows in every shard file under ``out_dir`` (from the Parquet footers)."""
    import pyarrow.parquet as pq

    from ray_bench.results import SHARD_GLOB

    return sum(pq.read_metadata(p).num_rows for p in Path(out_dir).glob(SHARD_GLOB))


def run_config(opts: RunnerBenchOptions, data_dir: Path, out_dir: Path, shard_size: int):
    """The :class:`~ray_bench.config.RunConfig` of one Ray run."""
    from ray_bench.config import RunConfig

    return RunConfig(
        models=[MODEL], datasets=[DATASET], data_dir=data_dir, out_dir=out_dir, shard_size=shard_size,
        bbq_context="all", engine={"name": "dummy", "options": {"delay_s": opts.delay_s}},
        resources={"device": "cpu", "replicas": opts.replicas},
    )


def run_ray(opts: RunnerBenchOptions, data_dir: Path, out_dir: Path, shard_size: int) -> ApproachRun:
    """One run through :func:`ray_bench.runner.driver.run` (Ray must be up); raises if a shard failed."""
    from ray_bench.errors import RayBenchError
    from ray_bench.runner.driver import run

    config = run_config(opts, data_dir, out_dir, shard_size)
    wall_start, started = time.time(), time.perf_counter()
    summary = run(config, progress=False)
    seconds = time.perf_counter() - started
    if not summary.ok:
        raise RayBenchError(f"the Ray run at shard size {shard_size} failed: {dict(list(summary.failed.items())[:3])}")
    shards = json.loads((out_dir / "manifest.json").read_text()).get("shards", {}).values()
    starts = [e["started_at"] for e in shards if "started_at" in e]
    return ApproachRun(
        seconds=seconds, out_dir=out_dir, rows=count_rows(out_dir),
        actor_seconds=sum(float(e.get("seconds", 0)) for e in shards),
        first_shard_after_s=min(starts) - wall_start if starts else None,
    )


def run_in_process(opts: RunnerBenchOptions, data_dir: Path, out_dir: Path, shard_size: int) -> ApproachRun:
    """The same shards through the same engine in this process, written with the same shard writer."""
    from ray_bench.config import EngineConfig, ModelSpec
    from ray_bench.datasets import read_questions
    from ray_bench.engines.base import create_engine
    from ray_bench.results import shard_path, write_shard
    from ray_bench.stages.answer_rows import process_shard
    from ray_bench.stages.plan import plan_dataset

    started = time.perf_counter()
    model = ModelSpec.parse(MODEL)
    config = EngineConfig(name="dummy", options={"delay_s": opts.delay_s})
    table = read_questions(data_dir, DATASET)
    decoding = config.decoding(DATASET)
    metadata = {"decoding": json.dumps(asdict(decoding))}
    engine = create_engine(model, config)
    try:
        for job in plan_dataset(model.name, DATASET, table.column("question_id").to_pylist(), shard_size):
            rows = process_shard(engine, table.slice(job.start, job.size), model.name, decoding)
            write_shard(shard_path(out_dir, job.key), rows, job.fingerprint, metadata=metadata)
    finally:
        engine.close()
    return ApproachRun(seconds=time.perf_counter() - started, out_dir=out_dir, rows=count_rows(out_dir))


def _one_round(opts: RunnerBenchOptions, data_dir: Path, work: Path, index: int, shard_size: int) -> RoundTiming:
    """Both approaches at ``shard_size``, ray first in even rounds, into fresh directories."""
    runs: dict[str, ApproachRun] = {}
    order = APPROACHES if index % 2 == 0 else APPROACHES[::-1]
    for name in order:
        out_dir = work / f"round-{index}" / f"shards-{shard_size}" / name
        shutil.rmtree(out_dir, ignore_errors=True)
        runner = run_ray if name == "ray" else run_in_process
        runs[name] = runner(opts, data_dir, out_dir, shard_size)
    return RoundTiming(round=index, first=order[0], ray=runs["ray"], in_process=runs["in-process"])


def _measure(opts: RunnerBenchOptions, work: Path, log: Callable[[str], None]) -> tuple[float, list[list[RoundTiming]]]:
    """Ray startup seconds and, per shard size, its rounds (Ray up once around all of them)."""
    from ray_bench.runner.session import ray_session

    data_dir = work / "data"
    write_dataset(data_dir, opts.questions)
    per_size: list[list[RoundTiming]] = [[] for _ in opts.shard_sizes]
    started = time.perf_counter()
    with ray_session():
        startup = time.perf_counter() - started
        log(f"ray up in {startup:.1f} s")
        for index in range(opts.rounds):
            for timings, size in zip(per_size, opts.shard_sizes):
                timing = _one_round(opts, data_dir, work, index, size)
                timings.append(timing)
                log(f"round {index + 1}/{opts.rounds}, shards of {size}: ray {timing.ray.seconds:.2f} s, "
                    f"in-process {timing.in_process.seconds:.2f} s")
    return startup, per_size


def run_runner_benchmark(
    opts: RunnerBenchOptions | None = None, log: Callable[[str], None] = lambda _msg: None
) -> RunnerBenchResult:
    """Measure the Ray runner's overhead over the same engine in-process (see the module docstring)."""
    opts = opts or RunnerBenchOptions()
    work = Path(opts.work_dir) if opts.work_dir else Path(tempfile.mkdtemp(prefix="rb-runner-bench-"))
    try:
        startup, per_size = _measure(opts, work, log)
    finally:
        if opts.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    engine_s = opts.questions * opts.delay_s
    sizes = tuple(
        ShardSizeResult(shard_size=size, shards=-(-opts.questions // size), engine_s=engine_s, rounds=tuple(timings))
        for size, timings in zip(opts.shard_sizes, per_size)
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return RunnerBenchResult(
        options=opts, engine_s=engine_s, ray_startup_s=startup, cpu_count=os.cpu_count() or 1, sizes=sizes,
        load_average_after=load,
    )
