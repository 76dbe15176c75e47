"""Result shards: one Parquet file per (model, dataset, shard), written atomically.

Layout: ``<out>/<model>/<dataset>/shard-NNNNN.parquet`` plus ``<out>/manifest.json``.
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


def shard_path(out_dir: str | Path, key: str) -> Path:
    """Path of the shard named ``model/dataset/shard-NNNNN``."""
    return Path(out_dir) / f"{key}.parquet"


def write_shard(path: Path, table: pa.Table, fingerprint: str) -> None:
    """Write ``table`` to ``path`` atomically, recording ``fingerprint`` in its metadata."""
    import pyarrow.parquet as pq

    from ray_bench.schema import result_schema

    meta = dict(table.schema.metadata or {})
    meta[FINGERPRINT_KEY] = fingerprint.encode()
    table = table.cast(result_schema()).replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_fingerprint(path: Path) -> str | None:
    """The fingerprint stored in a shard file, or ``None`` if absent or unreadable."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):
        return None
    value = meta.get(FINGERPRINT_KEY)
    return value.decode() if value else None
