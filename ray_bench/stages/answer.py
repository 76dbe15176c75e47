"""The answer stage: questions -> results (choice scores of closed questions, generations of open ones).

One actor group per evaluated model; a job is one shard of one dataset's questions
(:mod:`ray_bench.stages.plan`). Every result shard records the decoding its open questions
used, in its Parquet metadata and in the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_bench.errors import CorruptShardError, ResumeMismatchError
from ray_bench.results import read_fingerprint, read_metadata, shard_path, verify_shard, write_shard
from ray_bench.stages.base import ShardJob
from ray_bench.stages.plan import plan_run

#: Metadata key of what made a shard (:meth:`AnswerStage.made_by`).
MADE_BY = "made_by"

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_bench.config import EngineConfig, ModelSpec, ResourceConfig, RunConfig
    from ray_bench.engines.base import Decoding, Engine


@dataclass(frozen=True)
class AnswerTask:
    """What a model actor computes for one shard of questions."""

    model: str
    decoding: Decoding

    def run(self, engine: Engine, payload: pa.Table) -> pa.Table:
        """Result rows (result schema) of the questions in ``payload``."""
        from ray_bench.stages.answer_rows import process_shard

        return process_shard(engine, payload, self.model, self.decoding)


#: Where ``--recompute-bad`` moves shard files that failed verification (outside the shard globs).
BAD_SHARDS_DIR = "bad-shards"


def pending_jobs(
    jobs: list[ShardJob], out_dir: Path, made_by: Callable[[ShardJob], dict[str, Any]], *, recompute_bad: bool = False
) -> tuple[list[ShardJob], int]:
    """Jobs still to compute, and how many are already done.

    Done: the file is whole (:func:`~ray_bench.results.verify_shard`), holds the job's questions
    and was made by the same configuration (``made_by``).

    Raises:
        CorruptShardError: a file is not whole (without ``recompute_bad``, which moves it aside).
        ResumeMismatchError: a file holds other questions or was made differently.
    """
    pending, done = [], 0
    for job in jobs:
        path = shard_path(out_dir, job.key)
        if not path.exists():
            pending.append(job)
            continue
        problem = verify_shard(path)
        if problem is not None:
            if not recompute_bad:
                raise CorruptShardError(f"shard {str(path)!r} is damaged: {problem}")
            move_aside(path, out_dir, job.key)
            pending.append(job)
            continue
        found = read_fingerprint(path)
        if found != job.fingerprint:
            raise ResumeMismatchError(
                f"{str(path)!r} holds other questions than this run's shard {job.key} "
                f"(fingerprint {found} != {job.fingerprint})"
            )
        check_made_by(path, read_metadata(path, MADE_BY), made_by(job))
        done += 1
    return pending, done


def move_aside(path: Path, out_dir: Path, key: str) -> Path:
    """Move a damaged shard to ``<out>/bad-shards/<key>-<time>.parquet`` (kept for inspection)."""
    import time

    target = Path(out_dir) / BAD_SHARDS_DIR / f"{key}-{time.strftime('%Y%m%dT%H%M%S')}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    path.replace(target)
    return target


def check_made_by(path: Path, found: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    """Refuse a shard made by another configuration, naming the first field that differs."""
    hint = ("Use a new --out directory (or another model name) for this configuration; to replace these "
            "results, delete that model's directory in --out first.")
    if found is None:
        raise ResumeMismatchError(
            f"{str(path)!r} does not record what made it (written before ray-bench recorded it)", hint=hint
        )
    for field in sorted(set(found) | set(expected)):
        if found.get(field) != expected.get(field):
            raise ResumeMismatchError(
                f"{str(path)!r} was made with {field}={found.get(field)!r}, this run has {expected.get(field)!r}",
                hint=hint,
            )


class AnswerStage:
    """Questions -> results for every (model, dataset) of a :class:`~ray_bench.config.RunConfig`."""

    name = "answer"
    manifest_section = "models"

    def __init__(self, config: RunConfig, questions: dict[str, pa.Table]) -> None:
        self.config = config
        self.engine = config.engine
        self.resources, served = stage_resources(config.engine, config.resources)
        self.questions = questions
        self.out_dir = Path(config.out_dir)
        self._models = {m.name: _model_identity(m, served) for m in config.models}
        self._open = {name: "open" in set(t.column("kind").to_pylist()) for name, t in questions.items()}

    def actor_models(self) -> dict[str, ModelSpec]:
        """One actor group per evaluated model."""
        return {m.name: m for m in self.config.models}

    @cached_property
    def planned(self) -> list[ShardJob]:
        """Every shard of the run, done or not (planned once: the resume, the shift rule and the judge read it)."""
        return plan_run(self.config.models, self.questions, self.config.shard_size)

    def initial_jobs(self) -> tuple[list[ShardJob], int]:
        """Every planned shard whose result file is not there yet (or was damaged, with ``recompute_bad``)."""
        return pending_jobs(self.planned, self.out_dir, self.made_by, recompute_bad=self.config.recompute_bad)

    def made_by(self, job: ShardJob) -> dict[str, Any]:
        """What makes a shard's numbers: the checkpoint, engine, dtype, device, options, system
        prompt, prompt-rendering version and, for datasets with open questions, the decoding."""
        from ray_bench.engines.base import result_options
        from ray_bench.engines.prompts import PROMPT_VERSION

        engine = self.engine
        out = {**self._models[job.model], "engine": engine.name, "dtype": engine.dtype, "device": engine.device,
               "engine_options": result_options(engine), "system_prompt": engine.system_prompt,
               "prompt_version": PROMPT_VERSION}
        if self._open.get(job.dataset):
            out["decoding"] = asdict(engine.decoding(job.dataset))
        return json.loads(json.dumps(out, default=str))  # as it reads back from the file

    def jobs_after(self, landed: ShardJob) -> list[ShardJob]:
        """The first stage: nothing upstream."""
        return []

    def payload(self, job: ShardJob) -> tuple[AnswerTask, pa.Table]:
        """The shard's questions and the decoding of its dataset."""
        table = self.questions[job.dataset].slice(job.start, job.size)
        return AnswerTask(job.model, self.engine.decoding(job.dataset)), table

    def land(self, job: ShardJob, table: pa.Table) -> dict[str, Any]:
        """Write the result shard (with its decoding); the manifest gets error counts and decoding."""
        decoding = asdict(self.engine.decoding(job.dataset))
        metadata = {"decoding": json.dumps(decoding), MADE_BY: json.dumps(self.made_by(job))}
        write_shard(shard_path(self.out_dir, job.key), table, job.fingerprint, metadata=metadata)
        errors = table.num_rows - table.column("error").null_count
        return {"question_errors": errors, "decoding": decoding}


def stage_resources(engine: EngineConfig, resources: ResourceConfig) -> tuple[ResourceConfig, bool]:
    """What a stage's actors reserve, and whether ``engine`` is an API engine's (a served model).

    An API engine's actors only wait on a server: CPU actors, never a GPU, in a GPU run too
    (:func:`ray_bench.runner.session.actor_options`, ``driver._run_stages``).
    """
    from ray_bench.engines.base import API_ENGINES

    served = engine.name in API_ENGINES
    return (resources.model_copy(update={"device": "cpu"}) if served else resources), served


def _model_identity(model: ModelSpec, served: bool = False) -> dict[str, Any]:
    """Path, revision and, for a local checkpoint, its digest (computed once per run, on the driver).

    A ``served`` model (an API engine's) is its name on the server; the weights behind it cannot be
    seen, so there is no digest: the server's ``base_url`` is part of ``engine_options``.
    """
    from ray_bench.provenance import checkpoint_digest

    digest = None if served else checkpoint_digest(model.path)
    return {"model_path": model.path, "revision": model.revision, "checkpoint": digest}
