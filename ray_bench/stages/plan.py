"""Deterministic shard plans: which questions go into which shard file.

A shard is identified by (model, dataset, index) and fingerprinted by the ids of its
questions, so a rerun recognises finished shards and never mixes two question sets.
With ``shuffle_seed`` the questions of each dataset are first put in a seeded random order,
so that every shard (and every prefix of the shards) is a uniform random sample of the
dataset: what a sequential test that may stop early needs.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ray_bench.stages.base import ShardJob

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_bench.config import ModelSpec


def fingerprint_ids(question_ids: list[str]) -> str:
    """A stable 16-hex-digit hash of an ordered list of question ids."""
    h = hashlib.sha256()
    for qid in question_ids:
        h.update(qid.encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def shard_key(model: str, dataset: str, index: int) -> str:
    """``model/dataset/shard-NNNNN``: a result shard's name in the manifest and on disk."""
    return f"{model}/{dataset}/shard-{index:05d}"


def plan_dataset(model: str, dataset: str, question_ids: list[str], shard_size: int) -> list[ShardJob]:
    """Split one dataset's questions (in table order) into shards of ``shard_size``."""
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    shards = []
    for index, start in enumerate(range(0, len(question_ids), shard_size)):
        stop = min(start + shard_size, len(question_ids))
        shards.append(
            ShardJob(
                key=shard_key(model, dataset, index), group=model, fingerprint=fingerprint_ids(question_ids[start:stop]),
                size=stop - start, model=model, dataset=dataset, index=index, start=start, stop=stop,
            )
        )
    return shards


def plan_run(models: list[ModelSpec], questions: dict[str, pa.Table], shard_size: int) -> list[ShardJob]:
    """Every shard of every (model, dataset), models in the given order."""
    ids = {name: table.column("question_id").to_pylist() for name, table in questions.items()}
    return [
        shard
        for model in models
        for name in questions
        for shard in plan_dataset(model.name, name, ids[name], shard_size)
    ]


def shuffled(table: pa.Table, seed: int, dataset: str) -> pa.Table:
    """``table``'s rows in a random order fixed by (``seed``, ``dataset``), independent of the other datasets."""
    import numpy as np

    digest = hashlib.sha256(f"{seed}\x1f{dataset}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return table.take(rng.permutation(table.num_rows))
