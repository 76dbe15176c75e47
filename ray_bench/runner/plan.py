"""Deterministic shard plans: which questions go into which shard file.

A shard is identified by (model, dataset, index) and fingerprinted by the ids of its
questions, so a rerun recognises finished shards and never mixes two question sets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_bench.config import ModelSpec


@dataclass(frozen=True)
class Shard:
    """One unit of work and of resumption.

    Attributes:
        model: Model name.
        dataset: Dataset (directory) name.
        index: Shard number within the dataset (0-based).
        start: First row of the dataset's question table.
        stop: One past the last row.
        fingerprint: Hash of the shard's question ids (and the shard geometry).
    """

    model: str
    dataset: str
    index: int
    start: int
    stop: int
    fingerprint: str

    @property
    def key(self) -> str:
        """``model/dataset/shard-NNNNN``: the shard's name in the manifest and on disk."""
        return f"{self.model}/{self.dataset}/shard-{self.index:05d}"

    @property
    def num_questions(self) -> int:
        """Questions in the shard."""
        return self.stop - self.start


def fingerprint_ids(question_ids: list[str]) -> str:
    """A stable 16-hex-digit hash of an ordered list of question ids."""
    h = hashlib.sha256()
    for qid in question_ids:
        h.update(qid.encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def plan_dataset(model: str, dataset: str, question_ids: list[str], shard_size: int) -> list[Shard]:
    """Split one dataset's questions (in table order) into shards of ``shard_size``."""
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    shards = []
    for index, start in enumerate(range(0, len(question_ids), shard_size)):
        stop = min(start + shard_size, len(question_ids))
        shards.append(Shard(model, dataset, index, start, stop, fingerprint_ids(question_ids[start:stop])))
    return shards


def plan_run(models: list[ModelSpec], questions: dict[str, pa.Table], shard_size: int) -> list[Shard]:
    """Every shard of every (model, dataset), models in the given order."""
    ids = {name: table.column("question_id").to_pylist() for name, table in questions.items()}
    return [
        shard
        for model in models
        for name in questions
        for shard in plan_dataset(model.name, name, ids[name], shard_size)
    ]
