"""The results layer: shard files of a run (written atomically) and reading a run back.

``shards`` writes and identifies one shard file; ``reading`` scans a whole run, joined with
its prepared question tables, for the analysis.
"""

from ray_bench.results.reading import RunData, model_settings, scan_run
from ray_bench.results.shards import (
    FINGERPRINT_KEY,
    JUDGEMENT_GLOB,
    SHARD_GLOB,
    judgement_key,
    read_fingerprint,
    read_metadata,
    shard_path,
    verify_shard,
    write_shard,
)

__all__ = [
    "FINGERPRINT_KEY",
    "JUDGEMENT_GLOB",
    "SHARD_GLOB",
    "RunData",
    "judgement_key",
    "model_settings",
    "read_fingerprint",
    "read_metadata",
    "scan_run",
    "shard_path",
    "verify_shard",
    "write_shard",
]
