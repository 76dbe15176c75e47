"""The driver of ``ray-bench run`` and ``ray-bench judge``: validate, plan, run stages on Ray.

Everything that can be checked without a model (dataset names, prepared files, model
paths and engines in :mod:`ray_bench.runner.checks`, earlier results in the output
directory) is checked before any actor reserves a GPU. Then the stages run through the generic scheduler
(:mod:`ray_bench.runner.schedule`): ``answer`` (questions -> results) and, with a judge,
``judge`` (open-ended results -> safety verdicts). In GPU mode each actor reserves exactly
``gpus_per_worker`` GPUs and no CPU, so a node with G GPUs runs G models at once. A model
whose engine cannot start fails all its shards at once with that error; the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_bench import provenance
from ray_bench.config import JudgeConfig, JudgeOptions, RunConfig, check_job_paths
from ray_bench.errors import EngineStartError, ResultsError
from ray_bench.runner.checks import check_models, check_scoring, validate_models
from ray_bench.runner.lock import output_lock
from ray_bench.runner.manifest import Manifest, rebuild_shards
from ray_bench.runner.schedule import ShardHook, schedule
from ray_bench.runner.session import ray_session, resolve_device

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_bench.stages.base import ShardJob, Stage
    from ray_bench.stages.cost import DatasetCost

@dataclass
class RunSummary:
    """What a run did. ``failed`` maps shard keys to their error."""

    out_dir: Path
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    device: str = ""
    #: Model (or judge) name -> the error that kept its engine from starting (all its shards failed).
    load_errors: dict[str, EngineStartError] = field(default_factory=dict)
    #: (model, dataset) -> questions of this run's shards that got an ``error`` row.
    question_errors: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Stage -> shards it computed in this run.
    done_by_stage: dict[str, int] = field(default_factory=dict)
    #: (model, dataset) -> [judged answers, unsafe, judge outputs that did not parse].
    judged: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    #: (model, dataset) -> [shards, questions] not run because a shift test decided (``--stop-when-shifted``).
    not_run: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    #: ``<variant>/<dataset>`` -> the shift test's manifest entry (``--stop-when-shifted``).
    shift_tests: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no shard failed."""
        return not self.failed

    def count_done(self, stage: str, job: ShardJob, entry: dict[str, Any]) -> None:
        """Count a landed shard (``entry``: what its stage recorded in the manifest)."""
        self.done += 1
        self.done_by_stage[stage] = self.done_by_stage.get(stage, 0) + 1
        key = (job.model, job.dataset)
        if stage == "judge":
            counts = self.judged.setdefault(key, [0, 0, 0])
            counts[0] += job.size - entry.get("question_errors", 0)
            counts[1] += entry.get("unsafe", 0)
            counts[2] += entry.get("judge_errors", 0)
        elif entry.get("question_errors"):
            self.question_errors[key] = self.question_errors.get(key, 0) + entry["question_errors"]

    def count_dropped(self, model: str, dataset: str, jobs: list[ShardJob]) -> None:
        """Count shards a shift test took off the queue."""
        counts = self.not_run.setdefault((model, dataset), [0, 0])
        counts[0] += len(jobs)
        counts[1] += sum(job.size for job in jobs)


def load_questions(config: RunConfig) -> dict[str, pa.Table]:
    """Read, filter (BBQ context) and limit every requested dataset, in the given order."""
    import pyarrow.compute as pc

    from ray_bench.datasets import read_questions, resolve_names

    tables: dict[str, pa.Table] = {}
    for name in resolve_names(config.datasets):
        table = read_questions(config.data_dir, name)
        if config.shuffle_seed is not None:
            from ray_bench.stages.plan import shuffled

            table = shuffled(table, config.shuffle_seed, name)
        if config.bbq_context != "all" and table.num_rows and "context_condition" in table.column_names:
            cond = table.column("context_condition")
            if cond.null_count < table.num_rows:
                table = table.filter(pc.equal(cond, config.bbq_context))
        if config.limit is not None:
            table = table.slice(0, config.limit)
        tables[name] = table
    return tables


def _model_entry(config: RunConfig, name: str) -> dict[str, Any]:
    model = next(m for m in config.models if m.name == name)
    entry: dict[str, Any] = {"path": model.path, "revision": model.revision}
    try:
        from ray_bench.quantize.card import read_card
    except ImportError:
        return entry
    entry["quantization_card"] = read_card(model.path)
    return entry


@dataclass(frozen=True)
class PlanReport:
    """What ``run`` would do: token counts per (model, dataset), shards to run, GPU-hours.

    Attributes:
        costs: Per (model, dataset) token counts of the questions still to run.
        pending_shards: Shards ``run`` would compute.
        done_shards: Shards already in the output directory.
        gpu_hours: Per model, from ``config.throughput`` (``None`` without a throughput figure).
    """

    costs: tuple[DatasetCost, ...]
    pending_shards: int
    done_shards: int
    gpu_hours: dict[str, float | None]

    @property
    def summary_line(self) -> str:
        """``Plan: 1,200 questions, 3.1M forward + ≤0.2M generated tokens, ≈ 0.42 GPU-hours``."""
        questions = sum(c.pending for c in self.costs)
        forward = sum(c.forward_tokens for c in self.costs)
        decode = sum(c.decode_tokens_max for c in self.costs)
        hours = [h for h in self.gpu_hours.values() if h is not None]
        when = (f", about {sum(hours):.2f} GPU-hours" if len(hours) == len(self.gpu_hours) and hours
                else " (GPU-hours: pass --tokens-per-second and, for open questions, --decode-tokens-per-second)")
        return (f"Plan: {self.pending_shards} shard(s) to run ({self.done_shards} done), {questions:,} questions, "
                f"{forward / 1e6:.2f}M forward tokens + at most {decode / 1e6:.2f}M generated{when}")


def plan(config: RunConfig) -> PlanReport:
    """Validate everything :func:`run` would and estimate its cost; starts no Ray, loads no model.

    Raises:
        RayBenchError: every error :func:`run` raises before it starts Ray.
    """
    validate_models(config)
    questions = load_questions(config)
    check_scoring(config.engine, questions, config.judge)
    out_dir = Path(config.out_dir)
    manifest = Manifest.load_or_create(out_dir) if (out_dir / "manifest.json").exists() else None
    if manifest is not None:
        manifest.check_models({m.name: m.path for m in config.models})
    from ray_bench.stages.answer import AnswerStage

    pending, done = AnswerStage(config, questions).initial_jobs()
    return _plan_report(config, questions, pending, done)


def _plan_report(config: RunConfig, questions: dict[str, pa.Table], pending: list[ShardJob], done: int) -> PlanReport:
    from ray_bench.stages.cost import Throughput, estimate_costs

    counts: dict[tuple[str, str], int] = {}
    for job in pending:
        counts[(job.model, job.dataset)] = counts.get((job.model, job.dataset), 0) + job.size
    costs = estimate_costs(config.models, config.engine, questions, counts)
    rate = Throughput(config.throughput.forward_tokens_per_s, config.throughput.decode_tokens_per_s)
    hours = {m.name: rate.gpu_hours(sum(c.forward_tokens for c in costs if c.model == m.name),
                                    sum(c.decode_tokens_max for c in costs if c.model == m.name))
             for m in config.models}
    return PlanReport(tuple(costs), len(pending), done, hours)


def run(
    config: RunConfig,
    *,
    progress: bool = True,
    on_shard: ShardHook | None = None,
    on_plan: Callable[[PlanReport], None] | None = None,
) -> RunSummary:
    """Run every (model, dataset) shard not yet in ``config.out_dir`` (then judge them, with a judge).

    Args:
        config: The run.
        progress: Show progress bars on stderr.
        on_shard: Called on the driver after every landed shard: ``(stage, job, table)``.
        on_plan: Called with the :class:`PlanReport` (the cost estimate) before anything runs.

    Returns:
        A :class:`RunSummary`; failed shards are listed there (and rerunning retries them).
    """
    started = time.time()
    validate_models(config)
    questions = load_questions(config)
    check_scoring(config.engine, questions, config.judge)
    out_dir = Path(config.out_dir)
    with output_lock(out_dir, "run"):
        manifest = _open_manifest(out_dir)
        manifest.check_models({m.name: m.path for m in config.models})
        summary = _run_locked(config, questions, out_dir, manifest, progress, on_shard, on_plan)
    summary.seconds = round(time.time() - started, 2)
    return summary


def _open_manifest(out_dir: Path) -> Manifest:
    """The directory's manifest, with an entry for every whole shard file (rebuilt if it was lost,
    or if a killed driver's last shard landed after its last manifest write)."""
    manifest = Manifest.load_or_create(out_dir)
    if rebuild_shards(manifest, out_dir):
        manifest.save()
    return manifest


def _run_locked(
    config: RunConfig, questions: dict[str, pa.Table], out_dir: Path, manifest: Manifest,
    progress: bool, on_shard: ShardHook | None, on_plan: Callable[[PlanReport], None] | None = None,
) -> RunSummary:
    from ray_bench.stages.answer import AnswerStage

    answer = AnswerStage(config, questions)
    pending, done = answer.initial_jobs()
    pending_keys = {job.key for job in pending}
    planned = answer.planned
    landed = [job for job in planned if job.key not in pending_keys]  # on disk from earlier runs
    rule, decided, lockstep = None, [], None
    if config.stop_when_shifted is not None:
        rule, pending, decided = _shift_rule(config, questions, planned, pending, {job.key for job in landed})
        on_shard = _chain(rule.after_shard, on_shard)
        lockstep = rule.lockstep()
        # Bases first: on one GPU the base runs before its variants, which then stop the soonest.
        pending = sorted(pending, key=lambda job: job.model in lockstep)
    if on_plan is not None and pending:
        on_plan(_plan_report(config, questions, pending, done))
    stages: list[Stage] = [answer]
    initial: list[list[ShardJob]] = [pending]
    if config.judge is not None:
        judge = _judge_stage(config.judge, out_dir, questions, landed, manifest)
        judge_pending, judge_done = judge.initial_jobs()
        stages.append(judge)
        initial.append(judge_pending)
        done += judge_done
    summary = RunSummary(out_dir=out_dir, skipped=done)
    for job in decided:
        summary.count_dropped(job.model, job.dataset, [job])
    manifest.start_run(config.model_dump(mode="json"), {**provenance.collect(), "seed": config.seed})
    for model in config.models:
        manifest.set_model(model.name, _model_entry(config, model.name))
    manifest.save()
    try:
        _run_stages(stages, initial, manifest, summary, config.ray_address, progress, on_shard, lockstep)
    finally:
        if rule is not None:
            summary.shift_tests = rule.record()
            manifest.data["shift_tests"] = {**(manifest.data.get("shift_tests") or {}), **summary.shift_tests}
            manifest.save()
    return summary


def _shift_rule(
    config: RunConfig, questions: dict[str, pa.Table], planned: list[ShardJob], pending: list[ShardJob],
    done_keys: set[str],
) -> tuple[Any, list[ShardJob], list[ShardJob]]:
    """The shift-stop rule replayed over the shards already on disk; the pending jobs it keeps and drops."""
    from ray_bench.stages.shift_stop import ShiftStopRule

    rule = ShiftStopRule(config, questions, planned)
    decided = set(rule.start(done_keys))
    keep = [job for job in pending if (job.model, job.dataset) not in decided]
    return rule, keep, [job for job in pending if (job.model, job.dataset) in decided]


def _chain(first: ShardHook, then: ShardHook | None) -> ShardHook:
    """One shard hook calling ``first`` then ``then``; the drops of both."""
    if then is None:
        return first

    def hook(stage: str, job: ShardJob, table: pa.Table) -> list[tuple[str, str]]:
        return [*(first(stage, job, table) or ()), *(then(stage, job, table) or ())]

    return hook


def _judge_stage(
    options: JudgeOptions, out_dir: Path, questions: dict[str, pa.Table], sources: list[ShardJob], manifest: Manifest
) -> Stage:
    """The judge stage over ``sources``, its settings checked against earlier judgements and recorded."""
    from ray_bench.stages.judge import JudgeStage, check_judge_settings

    stage = JudgeStage(options, out_dir, questions, sources)
    check_judge_settings(out_dir, stage.judge, stage.settings(), manifest.data.get("judges") or {})
    manifest.set_judge(stage.judge, {"settings": stage.settings()})
    return stage


def _run_stages(
    stages: list[Stage],
    initial: list[list[ShardJob]],
    manifest: Manifest,
    summary: RunSummary,
    address: str | None,
    progress: bool,
    on_shard: ShardHook | None,
    lockstep: dict[str, str] | None = None,
) -> None:
    if any(initial):  # later stages' jobs only come from shards landing now
        with ray_session(address):
            # API engines' actors run on CPUs (AnswerStage): the run's device is the first other stage's.
            from ray_bench.engines.base import API_ENGINES

            first = next((s for s in stages if s.engine.name not in API_ENGINES), stages[0])
            summary.device = resolve_device(first.resources)
            schedule(stages, initial, manifest, summary, device=summary.device, progress=progress, on_shard=on_shard,
                     lockstep=lockstep)
    manifest.save()


def judge(config: JudgeConfig, *, progress: bool = True, on_shard: ShardHook | None = None) -> RunSummary:
    """Judge the open-ended results in ``config.results`` not judged yet (``ray-bench judge``).

    Returns:
        A :class:`RunSummary` of the judge stage.

    Raises:
        ResultsError: no results directory or manifest, or an unknown ``--model``.
    """
    from ray_bench.results.reading import resolve_data_dir

    started = time.time()
    check_job_paths({"results": config.results, "data_dir": config.data_dir}, None)
    check_models([config.judge.model], config.judge.engine, config.judge.resources)
    check_scoring(config.judge.engine, {}, config.judge)
    out_dir = Path(config.results)
    if not (out_dir / "manifest.json").is_file():
        raise ResultsError(
            f"{str(out_dir)!r} holds no run manifest (manifest.json)",
            hint="Pass the --out directory of a `ray-bench run` with --results.",
        )
    with output_lock(out_dir, "judge"):
        manifest = _open_manifest(out_dir)
        sources = _answer_shards(manifest, config.models, out_dir)
        data_dir = resolve_data_dir(out_dir, manifest.data, config.data_dir)
        questions = _questions_of(data_dir, sorted({job.dataset for job in sources}))
        stage = _judge_stage(config.judge, out_dir, questions, sources, manifest)
        pending, done = stage.initial_jobs()
        summary = RunSummary(out_dir=out_dir, skipped=done)
        manifest.start_run(config.model_dump(mode="json"), provenance.collect(), command="judge")
        manifest.save()
        _run_stages([stage], [pending], manifest, summary, config.ray_address, progress, on_shard)
    summary.seconds = round(time.time() - started, 2)
    return summary


def _answer_shards(manifest: Manifest, models: list[str] | None, out_dir: Path) -> list[ShardJob]:
    """The done result shards of ``models`` (default: all) as jobs a judge can follow."""
    from ray_bench.stages.base import ShardJob

    shards = {k: e for k, e in (manifest.data.get("shards") or {}).items()
              if e.get("status") == "done" and e.get("stage", "answer") == "answer"}
    known = sorted({key.split("/")[0] for key in shards})
    for name in models or []:
        if name not in known:
            from ray_bench.errors import UnknownNameError

            raise UnknownNameError("model", name, known)
    jobs = []
    for key, entry in sorted(shards.items()):
        model, dataset, shard = key.split("/")
        if models and model not in models:
            continue
        jobs.append(ShardJob(key=key, group=model, fingerprint=str(entry.get("fingerprint")),
                             size=int(entry.get("questions") or 0), model=model, dataset=dataset,
                             index=int(shard.removeprefix("shard-"))))
    if not jobs:
        raise ResultsError(f"no finished result shards to judge in {str(out_dir)!r}",
                           hint="Run `ray-bench run ... --out DIR` first.")
    return jobs


def _questions_of(data_dir: Path, subsets: list[str]) -> dict[str, pa.Table]:
    from ray_bench.datasets import read_questions

    return {name: read_questions(data_dir, name) for name in subsets}
