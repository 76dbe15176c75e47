"""The driver of ``ray-bench run``: validate, plan, schedule model actors, write shards.

Everything that can be checked without a model (dataset names, prepared files, model
paths, engine names, earlier results in the output directory) is checked here before
any actor reserves a GPU. Then each model gets ``replicas`` actors; in GPU mode each
reserves exactly ``gpus_per_worker`` GPUs and no CPU, so a node with G GPUs runs G
models at once and further models wait for Ray to free a GPU. Shards stream to the
actors (two in flight each); the driver writes every finished shard atomically and
updates the manifest. As soon as a model's last shard lands its actors close their engines
(vLLM shuts its engine core down) and are killed. A model whose engine cannot start fails
all its shards at once with that error; the other models go on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_bench.config import RunConfig
from ray_bench.errors import ConfigError, EngineStartError, ResumeMismatchError
from ray_bench.results import read_fingerprint, shard_path, write_shard
from ray_bench import provenance
from ray_bench.runner.manifest import Manifest
from ray_bench.runner.plan import Shard, plan_run
from ray_bench.runner.session import actor_options, ray_session, resolve_device

if TYPE_CHECKING:
    import pyarrow as pa

#: Engines that load a checkpoint directory (a local model path must hold its config.json).
MODEL_ENGINES = ("hf", "vllm")

#: Shards queued at each actor, so the next one is ready when the current one ends.
IN_FLIGHT_PER_ACTOR = 2


@dataclass
class RunSummary:
    """What a run did. ``failed`` maps shard keys to their error."""

    out_dir: Path
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    device: str = ""
    #: Model name -> the error that kept its engine from starting (all its shards failed).
    load_errors: dict[str, EngineStartError] = field(default_factory=dict)
    #: (model, dataset) -> questions of this run's shards that got an ``error`` row.
    question_errors: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no shard failed."""
        return not self.failed


def load_questions(config: RunConfig) -> dict[str, pa.Table]:
    """Read, filter (BBQ context) and limit every requested dataset, in the given order."""
    import pyarrow.compute as pc

    from ray_bench.datasets import read_questions, resolve_names

    tables: dict[str, pa.Table] = {}
    for name in resolve_names(config.datasets):
        table = read_questions(config.data_dir, name)
        if config.bbq_context != "all" and table.num_rows and "context_condition" in table.column_names:
            cond = table.column("context_condition")
            if cond.null_count < table.num_rows:
                table = table.filter(pc.equal(cond, config.bbq_context))
        if config.limit is not None:
            table = table.slice(0, config.limit)
        tables[name] = table
    return tables


def validate_models(config: RunConfig) -> None:
    """Fail on model paths that look local but do not exist (or, for the model engines, hold
    no ``config.json``), engines that are unknown or do not import, and bad engine options."""
    from ray_bench.engines.base import check_engine_options, check_engine_run, engine_names, resolve_engine_factory

    name = config.engine.name
    for model in config.models:
        path = Path(model.path).expanduser()
        # Hub ids are "name" or "org/name"; anything else is meant as a local path.
        looks_local = model.path.startswith(("/", ".", "~")) or model.path.count("/") > 1 or path.exists()
        if looks_local and not path.exists():
            raise ConfigError(
                f"model {model.name!r}: path {model.path!r} does not exist",
                hint="Pass an existing checkpoint directory or a Hugging Face id like org/name.",
            )
        if looks_local and name in MODEL_ENGINES and not (path / "config.json").is_file():
            raise ConfigError(
                f"model {model.name!r}: {model.path!r} is not a checkpoint directory (no config.json)",
                hint="Pass a directory written by save_pretrained (config.json, weights, tokenizer).",
            )
    if ":" in name:
        factory = resolve_engine_factory(name)  # imports it here, on the driver
        if not callable(factory):
            raise ConfigError(
                f"engine {name!r} is a {type(factory).__name__}, not a factory",
                hint="Point --engine at a callable (ModelSpec, EngineConfig) -> Engine.",
            )
    elif name not in engine_names():
        from ray_bench.errors import UnknownNameError

        raise UnknownNameError("engine", name, engine_names())
    check_engine_options(config.engine)
    check_engine_run(config.models, config.engine, config.resources)


def pending_shards(shards: list[Shard], out_dir: Path) -> tuple[list[Shard], int]:
    """Shards still to compute, and how many are already done (file present, same questions)."""
    pending, done = [], 0
    for shard in shards:
        path = shard_path(out_dir, shard.key)
        if not path.exists():
            pending.append(shard)
            continue
        found = read_fingerprint(path)
        if found != shard.fingerprint:
            raise ResumeMismatchError(
                f"{str(path)!r} holds other questions than this run's shard {shard.key} "
                f"(fingerprint {found} != {shard.fingerprint})"
            )
        done += 1
    return pending, done


def _model_entry(config: RunConfig, name: str) -> dict[str, Any]:
    model = next(m for m in config.models if m.name == name)
    entry: dict[str, Any] = {"path": model.path, "revision": model.revision}
    try:
        from ray_bench.quantize.card import read_card
    except ImportError:
        return entry
    entry["quantization_card"] = read_card(model.path)
    return entry


def run(config: RunConfig, *, progress: bool = True) -> RunSummary:
    """Run every (model, dataset) shard not yet in ``config.out_dir``.

    Returns:
        A :class:`RunSummary`; failed shards are listed there (and rerunning retries them).
    """
    started = time.time()
    validate_models(config)
    questions = load_questions(config)
    out_dir = Path(config.out_dir)
    manifest = Manifest.load_or_create(out_dir)
    manifest.check_models({m.name: m.path for m in config.models})
    shards = plan_run(config.models, questions, config.shard_size)
    pending, done = pending_shards(shards, out_dir)
    summary = RunSummary(out_dir=out_dir, skipped=done)
    manifest.start_run(config.model_dump(mode="json"), {**provenance.collect(), "seed": config.seed})
    for model in config.models:
        manifest.set_model(model.name, _model_entry(config, model.name))
    manifest.save()
    if pending:
        with ray_session(config.ray_address):
            summary.device = resolve_device(config.resources)
            _schedule(config, questions, pending, manifest, summary, progress)
    summary.seconds = round(time.time() - started, 2)
    manifest.save()
    return summary


@contextmanager
def _progress_bars(enabled: bool, totals: dict[str, int]) -> Iterator[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ray_bench.cli.common import err_console

    bars = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, disable=not enabled,
    )
    with bars:
        ids = {name: bars.add_task(name, total=total) for name, total in totals.items()}
        yield lambda name, n: bars.advance(ids[name], n)


def _schedule(
    config: RunConfig,
    questions: dict[str, pa.Table],
    pending: list[Shard],
    manifest: Manifest,
    summary: RunSummary,
    progress: bool,
) -> None:
    import ray

    from ray_bench.runner.worker import ModelWorker

    queues: dict[str, deque[Shard]] = {}
    for shard in pending:
        queues.setdefault(shard.model, deque()).append(shard)
    options = actor_options(config.resources, summary.device)
    remote_cls = ray.remote(**options)(ModelWorker)
    specs = {m.name: m for m in config.models}
    actors = {
        name: [remote_cls.remote(specs[name], config.engine) for _ in range(config.resources.replicas)]
        for name in queues
    }
    described = {name: actors[name][0].describe.remote() for name in queues}
    inflight: dict[Any, tuple[Shard, Any]] = {}

    def submit(actor: Any, name: str) -> None:
        if queues[name]:
            shard = queues[name].popleft()
            part = questions[shard.dataset].slice(shard.start, shard.num_questions)
            inflight[actor.run_shard.remote(part)] = (shard, actor)

    totals = {name: sum(s.num_questions for s in q) for name, q in queues.items()}
    for name, handles in actors.items():
        for actor in handles:
            for _ in range(IN_FLIGHT_PER_ACTOR):
                submit(actor, name)
    closing: dict[Any, Any] = {}
    with _progress_bars(progress, totals) as advance:
        while inflight or closing:
            ready, _ = ray.wait([*inflight, *closing], num_returns=1)
            if ready[0] in closing:
                ray.kill(closing.pop(ready[0]))
                continue
            shard, actor = inflight.pop(ready[0])
            start_error = _finish_shard(ready[0], shard, config.out_dir, manifest, summary)
            _record_engine(manifest, shard.model, described)
            advance(shard.model, shard.num_questions)
            if start_error is not None:
                advance(shard.model, _fail_model(shard.model, start_error, queues, manifest, summary))
            submit(actor, shard.model)
            if not queues[shard.model] and not any(s.model == shard.model for s, _ in inflight.values()):
                for handle in actors.pop(shard.model, []):
                    closing[handle.close.remote()] = handle


def _fail_model(
    model: str, error: EngineStartError, queues: dict[str, deque[Shard]], manifest: Manifest, summary: RunSummary
) -> int:
    """The model's engine cannot start: fail its queued shards now, without sending them.

    Returns:
        How many questions those shards held (for the progress bar).
    """
    summary.load_errors[model] = error
    failed = 0
    while queues[model]:
        shard = queues[model].popleft()
        _record_failure(shard, f"EngineStartError: {error}", manifest, summary)
        failed += shard.num_questions
    manifest.save()
    return failed


def _record_failure(shard: Shard, message: str, manifest: Manifest, summary: RunSummary) -> None:
    """Mark ``shard`` failed in the summary and the manifest (saved by the caller); a rerun retries it."""
    summary.failed[shard.key] = message
    entry = {"fingerprint": shard.fingerprint, "questions": shard.num_questions}
    manifest.set_shard(shard.key, {**entry, "status": "failed", "error": message, "at": provenance.now_iso()})


def _finish_shard(
    ref: Any, shard: Shard, out_dir: Path, manifest: Manifest, summary: RunSummary
) -> EngineStartError | None:
    """Write a finished shard, or record its failure; returns the error if its engine could not start."""
    import ray

    entry: dict[str, Any] = {"fingerprint": shard.fingerprint, "questions": shard.num_questions}
    try:
        table, stats = ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - task errors and dead actors are recorded, retried next run
        start_error = exc if isinstance(exc, EngineStartError) else None
        if start_error is not None:
            # Ray's error subclasses the cause; rebuild it plainly (no remote traceback).
            start_error = EngineStartError(start_error.model, start_error.reason, start_error.hint)
            message = f"EngineStartError: {start_error}"
        else:
            message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
        _record_failure(shard, message, manifest, summary)
        manifest.save()
        return start_error
    write_shard(shard_path(out_dir, shard.key), table, shard.fingerprint)
    errors = table.num_rows - table.column("error").null_count
    manifest.set_shard(
        shard.key,
        {**entry, "status": "done", "question_errors": errors, **stats, "at": provenance.now_iso()},
    )
    if errors:
        key = (shard.model, shard.dataset)
        summary.question_errors[key] = summary.question_errors.get(key, 0) + errors
    manifest.save()
    summary.done += 1
    return None


def _record_engine(manifest: Manifest, model: str, described: dict[str, Any]) -> None:
    import ray

    ref = described.pop(model, None)
    if ref is None:
        return
    try:
        manifest.set_model(model, ray.get(ref, timeout=5))
    except Exception as exc:  # noqa: BLE001 - the shard errors already say why
        manifest.set_model(model, {"engine_error": str(exc).strip().splitlines()[-1:]})
