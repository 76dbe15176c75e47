"""Result shards: one Parquet file per (model, dataset, shard), written atomically.

Layout: ``<out>/<model>/<dataset>/shard-NNNNN.parquet`` plus ``<out>/manifest.json``; a judge's
verdicts on a shard go to ``<out>/<model>/<dataset>/judge-<judge>/shard-NNNNN.parquet``.
A shard file appears only complete (temp name, then ``os.replace``) and carries its
fingerprint in the Parquet metadata, so it describes itself even without the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ray_bench.atomic import atomic_path

if TYPE_CHECKING:
    import pyarrow as pa

FINGERPRINT_KEY = b"ray_bench.shard_fingerprint"
SHARD_GLOB = "*/*/shard-*.parquet"
#: Judgement shards live beside the results they judge: ``<model>/<dataset>/judge-<name>/``.
JUDGE_PREFIX = "judge-"
JUDGEMENT_GLOB = "*/*/judge-*/shard-*.parquet"


def shard_path(out_dir: str | Path, key: str) -> Path:
    """Path of the shard named ``model/dataset/shard-NNNNN``."""
    return Path(out_dir) / f"{key}.parquet"


def write_shard(
    path: Path, table: pa.Table, fingerprint: str, *, schema: pa.Schema | None = None, metadata: dict[str, str] | None = None
) -> None:
    """Write ``table`` to ``path`` atomically, recording ``fingerprint`` (and ``metadata``) in its metadata.

    ``schema`` defaults to the result schema; judgement shards pass theirs.
    """
    import pyarrow.parquet as pq

    from ray_bench.schema import result_schema

    meta = dict(table.schema.metadata or {})
    meta[FINGERPRINT_KEY] = fingerprint.encode()
    for key, value in (metadata or {}).items():
        meta[f"ray_bench.{key}".encode()] = value.encode()
    schema = schema or result_schema()
    table = table.cast(schema).replace_schema_metadata({**(schema.metadata or {}), **meta})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def judgement_key(result_key: str, judge: str) -> str:
    """``model/dataset/judge-<judge>/shard-NNNNN``: where ``judge``'s verdicts on a result shard go."""
    parent, _, name = result_key.rpartition("/")
    return f"{parent}/{JUDGE_PREFIX}{judge}/{name}"


def read_fingerprint(path: Path) -> str | None:
    """The fingerprint stored in a shard file, or ``None`` if absent or unreadable."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):
        return None
    value = meta.get(FINGERPRINT_KEY)
    return value.decode() if value else None
