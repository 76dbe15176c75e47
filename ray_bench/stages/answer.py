"""The answer stage: questions -> results (choice scores of closed questions, generations of open ones).

One actor group per evaluated model; a job is one shard of one dataset's questions
(:mod:`ray_bench.stages.plan`). Every result shard records the decoding its open questions
used, in its Parquet metadata and in the manifest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_bench.errors import ResumeMismatchError
from ray_bench.results import read_fingerprint, shard_path, write_shard
from ray_bench.stages.base import ShardJob
from ray_bench.stages.plan import plan_run

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_bench.config import ModelSpec, RunConfig
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


def pending_jobs(jobs: list[ShardJob], out_dir: Path) -> tuple[list[ShardJob], int]:
    """Jobs still to compute, and how many are already done (file present, same fingerprint).

    Raises:
        ResumeMismatchError: an output file holds another input than its job's.
    """
    pending, done = [], 0
    for job in jobs:
        path = shard_path(out_dir, job.key)
        if not path.exists():
            pending.append(job)
            continue
        found = read_fingerprint(path)
        if found != job.fingerprint:
            raise ResumeMismatchError(
                f"{str(path)!r} holds other questions than this run's shard {job.key} "
                f"(fingerprint {found} != {job.fingerprint})"
            )
        done += 1
    return pending, done


class AnswerStage:
    """Questions -> results for every (model, dataset) of a :class:`~ray_bench.config.RunConfig`."""

    name = "answer"
    manifest_section = "models"

    def __init__(self, config: RunConfig, questions: dict[str, pa.Table]) -> None:
        self.config = config
        self.engine = config.engine
        self.resources = config.resources
        self.questions = questions
        self.out_dir = Path(config.out_dir)

    def actor_models(self) -> dict[str, ModelSpec]:
        """One actor group per evaluated model."""
        return {m.name: m for m in self.config.models}

    def initial_jobs(self) -> tuple[list[ShardJob], int]:
        """Every planned shard whose result file is not there yet."""
        return pending_jobs(plan_run(self.config.models, self.questions, self.config.shard_size), self.out_dir)

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
        write_shard(shard_path(self.out_dir, job.key), table, job.fingerprint, metadata={"decoding": json.dumps(decoding)})
        errors = table.num_rows - table.column("error").null_count
        return {"question_errors": errors, "decoding": decoding}
