"""Result shards: one Parquet file per (model, dataset, shard), written atomically.

Layout: ``<out>/<model>/<dataset>/shard-NNNNN.parquet`` plus ``<out>/manifest.json``; a judge's
verdicts on a shard go to ``<out>/<model>/<dataset>/judge-<judge>/shard-NNNNN.parquet``.
A shard file appears only complete (temp name, then ``os.replace``) and carries its
fingerprint in the Parquet metadata, so it describes itself even without the manifest.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_bench.atomic import atomic_path

if TYPE_CHECKING:
    import pyarrow as pa

FINGERPRINT_KEY = b"ray_bench.shard_fingerprint"
ROWS_KEY = b"ray_bench.rows"
SHARD_GLOB = "*/*/shard-*.parquet"
#: Judgement shards live beside the results they judge: ``<model>/<dataset>/judge-<name>/``.
JUDGE_PREFIX = "judge-"
JUDGEMENT_GLOB = "*/*/judge-*/shard-*.parquet"
#: The file name a shard is written under (a copy such as ``shard-00000-copy.parquet`` is not one).
SHARD_NAME = re.compile(r"^shard-\d{5}\.parquet$")


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
    meta[ROWS_KEY] = str(table.num_rows).encode()
    schema = schema or result_schema()
    table = table.cast(schema).replace_schema_metadata({**(schema.metadata or {}), **meta})
    with atomic_path(path) as tmp:
        # Page CRCs let a reader find scrambled bytes behind an intact footer (verify_shard).
        pq.write_table(table, tmp, write_page_checksum=True)


def verify_shard(path: Path) -> str | None:
    """Why the shard file at ``path`` cannot be trusted, or ``None`` when it is whole.

    Whole: the footer parses, every page's CRC matches, and the row count equals the one
    recorded when it was written. Reads the file once (shards are small).
    """
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        table = pq.read_table(path, page_checksum_verification=True)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for damaged files
        text = str(exc).strip().splitlines()
        return f"unreadable ({type(exc).__name__}: {text[0] if text else ''})"
    if FINGERPRINT_KEY not in meta:
        return "not written by ray-bench (no fingerprint in its metadata)"
    rows = meta.get(ROWS_KEY)
    if rows is not None and int(rows) != table.num_rows:
        return f"holds {table.num_rows} rows, {int(rows)} were written"
    return None


def read_metadata(path: Path, key: str) -> Any:
    """The JSON value stored under ``ray_bench.<key>`` in a shard's metadata, or ``None``."""
    import json

    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(f"ray_bench.{key}".encode())
        return json.loads(raw) if raw else None
    except (OSError, ValueError):
        return None


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
