"""The generic scheduler: stages of shard jobs through model actors, one model per actor.

Stages run in order (answer, then judge). Each actor group of a stage (one model) gets
``replicas`` actors that load the model once; jobs stream to them, ``IN_FLIGHT_PER_ACTOR``
each. The driver writes every finished shard through its stage (atomically), updates the
manifest, calls the shard hook, and hands the landed job to the later stages, whose jobs
it makes possible. A group whose queue is empty, with nothing in flight and nothing more to
come from earlier stages, closes its engines and its actors are killed.

When a later stage starts: as soon as it has a job, if the cluster can hold its actors beside
every actor of the earlier stages that is still alive or waiting for resources; otherwise
when enough of those are gone. So with one GPU the answer actors free it before the judge
starts, and with several judging overlaps answering - never waiting on a GPU that an earlier
stage's pending actor needs (which would deadlock).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from ray_bench import provenance
from ray_bench.errors import EngineStartError
from ray_bench.runner.progress import progress_display
from ray_bench.runner.session import actor_options

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import pyarrow as pa

    from ray_bench.runner.driver import RunSummary
    from ray_bench.runner.manifest import Manifest
    from ray_bench.stages.base import ShardJob, Stage

#: Shards queued at each actor, so the next one is ready when the current one ends.
IN_FLIGHT_PER_ACTOR = 2
#: In lockstep, a follower's shard k of a dataset is sent once its leader landed shard k - LOCKSTEP_LAG.
LOCKSTEP_LAG = 1

#: Called after every landed shard with the stage's name, the job and its output rows. It may
#: return ``(group, dataset)`` pairs whose queued first-stage jobs are then dropped, never run
#: (``run --stop-when-shifted``); ``None`` drops nothing.
ShardHook: TypeAlias = "Callable[[str, ShardJob, pa.Table], Iterable[tuple[str, str]] | None]"


@dataclass
class _StageRun:
    """The scheduler's state of one stage."""

    stage: Stage
    options: dict[str, Any]
    queues: dict[str, deque[ShardJob]] = field(default_factory=dict)
    actors: dict[str, list[Any]] = field(default_factory=dict)
    described: dict[str, Any] = field(default_factory=dict)
    #: Groups whose actors were started (and maybe closed since): never started twice.
    started: set[str] = field(default_factory=set)
    failed: dict[str, EngineStartError] = field(default_factory=dict)

    def demand(self) -> float:
        """What one actor of this stage reserves of the scheduled resource."""
        return float(self.options.get("num_gpus") or self.options.get("num_cpus") or 0)


def schedule(
    stages: list[Stage],
    initial: list[list[ShardJob]],
    manifest: Manifest,
    summary: RunSummary,
    *,
    device: str,
    progress: bool,
    on_shard: ShardHook | None = None,
    lockstep: dict[str, str] | None = None,
) -> None:
    """Run every job of every stage (and the jobs they make possible) to completion.

    ``lockstep`` maps first-stage groups (followers) to the group they must not run ahead of
    (leaders): a follower's shard k of a dataset waits until its leader has landed shard
    ``k - LOCKSTEP_LAG``, but only while the leader is running (it landed a shard in this run and
    has one in flight, or its actor has started) or, before that, while the cluster can hold every
    actor at once (so the leader is loading, not waiting for the follower's resources). A follower never waits
    on a leader that cannot compute: no deadlock when the two cannot run at once.
    """
    runs = [_StageRun(stage, actor_options(stage.resources, device)) for stage in stages]
    state = _Scheduler(runs, manifest, summary, device, on_shard, lockstep or {})
    with progress_display(progress) as bars:
        state.bars = bars
        for run, jobs in zip(runs, initial):
            for job in jobs:
                state.enqueue(run, job)
        state.loop()


class _Scheduler:
    def __init__(self, runs: list[_StageRun], manifest: Manifest, summary: RunSummary, device: str,
                 on_shard: ShardHook | None, lockstep: dict[str, str]) -> None:
        self.runs = runs
        self.lockstep = lockstep
        self.landed: set[str] = set()  # first-stage shards landed in this run
        self.manifest = manifest
        self.summary = summary
        self.resource = "GPU" if device == "gpu" else "CPU"
        self.on_shard = on_shard
        self.inflight: dict[Any, tuple[_StageRun, ShardJob, Any]] = {}
        self.closing: dict[Any, tuple[_StageRun, Any]] = {}
        self.bars: Any = None

    # ---------------------------------------------------------------- queueing
    def enqueue(self, run: _StageRun, job: ShardJob) -> None:
        if job.group in run.failed:
            self._record_failure(run, job, f"EngineStartError: {run.failed[job.group]}")
            return
        run.queues.setdefault(job.group, deque()).append(job)
        self.bars.grow(job.group, job.size)

    def _upstream_busy(self, index: int) -> bool:
        """Whether a stage before ``index`` may still land shards (so make new jobs)."""
        return any(r.queues.get(g) or r.actors.get(g) for r in self.runs[:index] for g in r.queues | r.actors) or any(
            run in self.runs[:index] for run, _, _ in self.inflight.values()
        )

    def _live_demand(self, index: int) -> float:
        """Resources held or awaited by the actors of the stages before ``index`` (killed ones excluded)."""
        return sum(run.demand() * len(handles) for run in self.runs[:index] for handles in run.actors.values()) + sum(
            run.demand() for run, _ in self.closing.values() if run in self.runs[:index]
        )

    def _may_start(self, index: int, run: _StageRun) -> bool:
        if index == 0 or not self._upstream_busy(index):
            return True
        import ray

        total = ray.cluster_resources().get(self.resource, 0)
        need = run.demand() * run.stage.resources.replicas
        return self._live_demand(index) + need <= total

    def _start_groups(self) -> None:
        import ray

        from ray_bench.runner.worker import ModelWorker

        for index, run in enumerate(self.runs):
            models = run.stage.actor_models()
            for group, queue in run.queues.items():
                if not queue or group in run.started or not self._may_start(index, run):
                    continue
                remote_cls = ray.remote(**run.options)(ModelWorker)
                handles = [remote_cls.remote(models[group], run.stage.engine) for _ in range(run.stage.resources.replicas)]
                run.actors[group] = handles
                run.started.add(group)
                self.bars.start(group)
                run.described[group] = handles[0].describe.remote()
        self._feed()

    def _feed(self) -> None:
        """Fill every live actor up to ``IN_FLIGHT_PER_ACTOR`` shards from its group's queue."""
        load: dict[int, int] = {}
        for _, _, actor in self.inflight.values():
            load[id(actor)] = load.get(id(actor), 0) + 1
        for run in self.runs:
            for group, handles in run.actors.items():
                queue = run.queues.get(group)
                for actor in handles:
                    while queue and load.get(id(actor), 0) < IN_FLIGHT_PER_ACTOR and not self._held(run, queue[0]):
                        job = queue.popleft()
                        task, payload = run.stage.payload(job)
                        self.inflight[actor.run_shard.remote(task, payload)] = (run, job, actor)
                        load[id(actor)] = load.get(id(actor), 0) + 1

    def _held(self, run: _StageRun, job: ShardJob) -> bool:
        """Whether a follower's ``job`` waits for its leader (see :func:`schedule`)."""
        leader = self.lockstep.get(job.group)
        if leader is None or run is not self.runs[0] or job.index < LOCKSTEP_LAG:
            return False
        from ray_bench.stages.plan import shard_key

        needed = shard_key(leader, job.dataset, job.index - LOCKSTEP_LAG)
        if needed in self.landed:
            return False
        leader_inflight = [j for r, j, _ in self.inflight.values() if r is run and j.group == leader]
        coming = any(j.key == needed for j in leader_inflight) or any(
            j.key == needed for j in run.queues.get(leader) or ())
        if not coming:  # landed before this run, failed, or dropped: nothing to wait for
            return False
        running = bool(leader_inflight) and any(k.split("/", 1)[0] == leader for k in self.landed)
        return running or (leader in run.actors and (self._alive(run, leader) or self._all_fit()))

    def _alive(self, run: _StageRun, group: str) -> bool:
        """Whether the group's first actor has started (its engine loaded): it holds its resources
        and computes, so waiting for it cannot deadlock."""
        import ray

        ref = run.described.get(group)
        if ref is None:  # already read: one of its shards has finished
            return True
        ready, _ = ray.wait([ref], timeout=0)
        return bool(ready)

    def _all_fit(self) -> bool:
        """Whether the cluster holds every live first-stage actor at once (so none waits for another's
        resources, and a follower may wait for its leader while the leader loads)."""
        import ray

        total = ray.cluster_resources().get(self.resource, 0)
        first = self.runs[0]
        return first.demand() * sum(len(h) for h in first.actors.values()) <= total

    # -------------------------------------------------------------------- loop
    def loop(self) -> None:
        import ray

        self._start_groups()
        while self.inflight or self.closing or any(q for r in self.runs for q in r.queues.values()):
            if not self.inflight and not self.closing:
                self._start_groups()
                if not self.inflight:  # queued jobs of groups that already closed: restart them
                    for run in self.runs:
                        run.started -= {g for g, q in run.queues.items() if q and g not in run.actors}
                    self._start_groups()
                    if not self.inflight:
                        break
            ready, _ = ray.wait([*self.inflight, *self.closing], num_returns=1)
            if ready[0] in self.closing:
                run, handle = self.closing.pop(ready[0])
                ray.kill(handle)
                self._start_groups()  # freed resources may let a waiting stage start
                continue
            run, job, _ = self.inflight.pop(ready[0])
            self._finish(run, job, ready[0])
            self._feed()
            self._close_finished()
            self._start_groups()

    def _finish(self, run: _StageRun, job: ShardJob, ref: Any) -> None:
        self._record_actor(run, job.group)
        got = self._collect(run, job, ref)
        self.bars.advance(job.group, job.size)
        if got is None:
            return
        table, stats = got
        stats_entry = run.stage.land(job, table)
        if run is self.runs[0]:
            self.landed.add(job.key)
        self.manifest.set_shard(job.key, {**self._entry(run, job), "status": "done", **stats_entry, **stats,
                                          "at": provenance.now_iso()})
        self.manifest.data["progress"] = self.bars.snapshot()
        self.manifest.save()
        self.summary.count_done(run.stage.name, job, stats_entry)
        if self.on_shard is not None:
            for group, dataset in self.on_shard(run.stage.name, job, table) or ():
                self.drop(group, dataset)
        index = self.runs.index(run)
        for later in self.runs[index + 1:]:
            for follow in later.stage.jobs_after(job):
                self.enqueue(later, follow)

    def drop(self, group: str, dataset: str) -> None:
        """Take the queued first-stage jobs of (``group``, ``dataset``) off the queue; they are not run
        (and leave no manifest entry, so a later run without the hook runs them)."""
        queue = self.runs[0].queues.get(group)
        if not queue:
            return
        kept = deque(job for job in queue if job.dataset != dataset)
        dropped = [job for job in queue if job.dataset == dataset]
        self.runs[0].queues[group] = kept
        self.bars.shrink(group, sum(job.size for job in dropped))
        self.summary.count_dropped(group, dataset, dropped)

    def _collect(self, run: _StageRun, job: ShardJob, ref: Any) -> tuple[pa.Table, dict[str, Any]] | None:
        """The shard's output and run statistics, or ``None`` after recording why it failed."""
        import ray

        try:
            table, stats = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - task errors and dead actors are recorded, retried next run
            if isinstance(exc, EngineStartError):
                # Ray's error subclasses the cause; rebuild it plainly (no remote traceback).
                error = EngineStartError(exc.model, exc.reason, exc.hint)
                self._fail_group(run, job, error)
                return None
            text = str(exc).strip()
            self._record_failure(run, job, f"{type(exc).__name__}: {text.splitlines()[-1] if text else ''}")
            return None
        return table, stats

    def _fail_group(self, run: _StageRun, job: ShardJob, error: EngineStartError) -> None:
        """The group's engine cannot start: fail this job and its queued ones now, without sending them."""
        run.failed[job.group] = error
        self.summary.load_errors[job.group] = error
        self._record_failure(run, job, f"EngineStartError: {error}")
        queue = run.queues.get(job.group) or deque()
        while queue:
            queued = queue.popleft()
            self._record_failure(run, queued, f"EngineStartError: {error}")
            self.bars.advance(queued.group, queued.size)

    def _entry(self, run: _StageRun, job: ShardJob) -> dict[str, Any]:
        entry = {"stage": run.stage.name, "fingerprint": job.fingerprint, "questions": job.size}
        return {**entry, "source": job.source} if job.source else entry

    def _record_failure(self, run: _StageRun, job: ShardJob, message: str) -> None:
        """Mark ``job`` failed in the summary and the manifest; a rerun retries it."""
        self.summary.failed[job.key] = message
        self.manifest.set_shard(job.key, {**self._entry(run, job), "status": "failed", "error": message,
                                          "at": provenance.now_iso()})
        self.manifest.save()

    def _close_finished(self) -> None:
        """Close every actor that is idle with nothing left to give it (each replica on its own).

        A replica is closed as soon as its group's queue is empty and it has nothing in flight,
        not when the whole group is: after a node loss the group's restarted actor may wait
        for exactly the GPU an idle surviving replica holds (tests/runner/test_node_loss.py).
        """
        busy = {id(actor) for _, _, actor in self.inflight.values()}
        for index, run in enumerate(self.runs):
            upstream = self._upstream_busy(index)
            for group in list(run.actors):
                if run.queues.get(group) or (upstream and group not in run.failed):
                    continue  # work queued, or more may come from an earlier stage
                handles = run.actors[group]
                for handle in [h for h in handles if id(h) not in busy]:
                    handles.remove(handle)
                    self.closing[handle.close.remote()] = (run, handle)
                if not handles:
                    del run.actors[group]

    def _record_actor(self, run: _StageRun, group: str) -> None:
        import ray

        ref = run.described.pop(group, None)
        if ref is None:
            return
        try:
            entry = ray.get(ref, timeout=5)
        except Exception as exc:  # noqa: BLE001 - the shard errors already say why
            entry = {"engine_error": str(exc).strip().splitlines()[-1:]}
        self.manifest.data.setdefault(run.stage.manifest_section, {}).setdefault(group, {}).update(entry)
