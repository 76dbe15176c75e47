"""What the Ray runner needs from a stage (the extension point of ``ray_bench.runner``).

A stage maps input shards to output shards with one model per actor. The runner owns
scheduling, actors, GPUs, restarts, resumption and the manifest; the stage owns what a shard
is, what the actor computes (:class:`ShardTask`, shipped to the actor) and how an output
shard is written. No Ray here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_bench.config import EngineConfig, ModelSpec, ResourceConfig
    from ray_bench.engines.base import Engine


@dataclass(frozen=True)
class ShardJob:
    """One unit of work and of resumption: one input shard -> one output shard file.

    Attributes:
        key: The output shard's name under the output directory (no ``.parquet``).
        group: The actor group that runs it: the name of the model its actors pin.
        fingerprint: Identity of the input (question ids, settings); a rerun that finds the
            output file with another fingerprint refuses to mix them.
        size: Items in the shard (progress bars).
        model: The evaluated model the shard belongs to.
        dataset: Dataset (directory) name.
        index: Shard number within (model, dataset).
        start: First input row (answer stage: of the dataset's question table).
        stop: One past the last input row.
        source: The upstream shard this job reads (judge stage), else ``None``.
    """

    key: str
    group: str
    fingerprint: str
    size: int
    model: str
    dataset: str
    index: int
    start: int = 0
    stop: int = 0
    source: str | None = None


@runtime_checkable
class ShardTask(Protocol):
    """What an actor computes for one shard; picklable (a frozen dataclass of plain values)."""

    def run(self, engine: Engine, payload: pa.Table) -> pa.Table:
        """The output rows of ``payload`` (the stage's input rows), computed with ``engine``."""
        ...


@runtime_checkable
class Stage(Protocol):
    """A stage as the runner drives it (see the module docstring).

    Attributes:
        name: ``answer``, ``judge``, ...; also the manifest's ``stage`` of its shards.
        manifest_section: Where the manifest records each group's engine and placement
            (``models`` for evaluated models, ``judges`` for judges).
        engine: The engine every actor of the stage creates.
        resources: What each actor reserves and how many per group.
    """

    name: str
    manifest_section: str
    engine: EngineConfig
    resources: ResourceConfig

    def actor_models(self) -> dict[str, ModelSpec]:
        """Actor group -> the model its actors load."""
        ...

    def initial_jobs(self) -> tuple[list[ShardJob], int]:
        """Jobs whose input exists now and whose output does not, and how many are done already."""
        ...

    def jobs_after(self, landed: ShardJob) -> list[ShardJob]:
        """Jobs an upstream stage's landed shard makes possible (``[]`` for a first stage)."""
        ...

    def payload(self, job: ShardJob) -> tuple[ShardTask, pa.Table]:
        """On the driver: what the actor runs for ``job``, and its input rows."""
        ...

    def land(self, job: ShardJob, table: pa.Table) -> dict[str, Any]:
        """Write ``job``'s output atomically; returns what the manifest records about it."""
        ...

