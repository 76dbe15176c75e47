"""The run manifest: ``<out>/manifest.json``.

It records the config, provenance (versions, git commit, seeds), each model's engine
and quantization card, and each shard's status. It is rewritten atomically after every
shard. Shard *files* are the source of truth for completion; the manifest explains them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_bench.atomic import write_json_atomic
from ray_bench.errors import ResultsError, ResumeMismatchError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass
class Manifest:
    """In-memory view of ``manifest.json`` (mutable: the driver updates it as shards land)."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load_or_create(cls, out_dir: Path) -> Manifest:
        """Read the manifest of ``out_dir`` or start an empty one."""
        path = Path(out_dir) / MANIFEST_NAME
        if not path.exists():
            return cls(path, {"manifest_version": MANIFEST_VERSION, "runs": [], "models": {}, "shards": {}})
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, RecursionError) as exc:
            what = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise ResultsError(
                f"cannot read {str(path)!r}: {what}",
                hint="Restore the file or move it away; shard files are kept and re-validated.",
            ) from None
        _check_shape(data, path)
        return cls(path, data)

    def save(self) -> None:
        """Write atomically (temp file, then rename)."""
        write_json_atomic(self.path, self.data)

    def check_models(self, models: dict[str, str]) -> None:
        """Refuse to mix results of two different models under one name."""
        known = self.data.get("models", {})
        for name, path in models.items():
            old = known.get(name, {}).get("path")
            if old is not None and old != path:
                raise ResumeMismatchError(
                    f"model name {name!r} already holds results of {old!r} in {str(self.path.parent)!r}, "
                    f"not {path!r}",
                    hint="Give this model another name (--model NAME=PATH) or use a new --out directory.",
                )

    def start_run(self, config: dict[str, Any], provenance: dict[str, Any], command: str = "run") -> None:
        """Append this invocation (command, config, provenance) to the run history."""
        self.data.setdefault("runs", []).append({"command": command, "config": config, "provenance": provenance})

    def set_judge(self, name: str, entry: dict[str, Any]) -> None:
        """Record a judge's settings (and, once loaded, its engine and placement)."""
        self.data.setdefault("judges", {}).setdefault(name, {}).update(entry)

    def set_model(self, name: str, entry: dict[str, Any]) -> None:
        """Record a model's path, engine info and quantization card."""
        self.data.setdefault("models", {}).setdefault(name, {}).update(entry)

    def set_shard(self, key: str, entry: dict[str, Any]) -> None:
        """Record a shard's status and statistics."""
        self.data.setdefault("shards", {})[key] = entry

    def shard(self, key: str) -> dict[str, Any]:
        """The shard's entry (empty dict if unknown)."""
        return self.data.get("shards", {}).get(key, {})


_SHAPE = {"runs": list, "models": dict, "shards": dict, "judges": dict}


def _check_shape(data: Any, path: Path) -> None:
    """Refuse a manifest that parses but is not one (a JSON list, ``shards`` a string, ...)."""
    hint = "Restore the file or move it away; shard files are kept and re-validated."
    if not isinstance(data, dict):
        raise ResultsError(f"{str(path)!r} holds a JSON {type(data).__name__}, not a run manifest object", hint=hint)
    for key, kind in _SHAPE.items():
        if key in data and not isinstance(data[key], kind):
            raise ResultsError(
                f"{str(path)!r}: field {key!r} is a {type(data[key]).__name__}, expected a JSON "
                f"{'list' if kind is list else 'object'}",
                hint=hint,
            )
    for key, entry in data.get("shards", {}).items():
        if not isinstance(entry, dict):
            raise ResultsError(f"{str(path)!r}: shard {key!r} is not an object", hint=hint)


def rebuild_shards(manifest: Manifest, out_dir: Path) -> int:
    """Enter every whole shard file that the manifest does not record as done.

    Two ways lead here: ``manifest.json`` was lost, or a driver was killed between a shard's
    file landing (atomic rename) and the manifest recording it. The file is the source of truth
    (a resume counts it done), so it must be in the manifest too: the readers and ``ray-bench
    judge`` read the shards the manifest lists as done. Every shard file carries its
    fingerprint, row count and what made it (answer shards) or its judge and source (judgement
    shards), so nothing they need is lost. Damaged files and copies under other names
    (``shard-00000-copy.parquet``) are not entered (the resume then reports damaged ones).

    Returns:
        How many entries were (re)built.
    """
    from ray_bench.results.shards import JUDGEMENT_GLOB, SHARD_GLOB, SHARD_NAME

    rebuilt = 0
    for path in sorted([*out_dir.glob(SHARD_GLOB), *out_dir.glob(JUDGEMENT_GLOB)]):
        key = str(path.relative_to(out_dir).with_suffix(""))
        if not SHARD_NAME.match(path.name) or manifest.shard(key).get("status") == "done":
            continue
        entry = _entry_from_file(manifest, path, key)
        if entry is not None:
            manifest.set_shard(key, entry)
            rebuilt += 1
    return rebuilt


def _entry_from_file(manifest: Manifest, path: Path, key: str) -> dict[str, Any] | None:
    """The ``done`` entry a whole shard file describes (None for a damaged file)."""
    import pyarrow.parquet as pq

    from ray_bench.results.shards import verify_shard

    if verify_shard(path) is not None:
        return None
    meta = {k.decode(): v.decode() for k, v in (pq.read_schema(path).metadata or {}).items()}
    entry: dict[str, Any] = {"fingerprint": meta.get("ray_bench.shard_fingerprint"),
                             "questions": int(meta.get("ray_bench.rows", 0)), "status": "done", "rebuilt": True}
    if "ray_bench.judge" in meta:
        entry.update(stage="judge", judge=meta["ray_bench.judge"], source=meta.get("ray_bench.source"))
        if "ray_bench.judge_settings" in meta and meta["ray_bench.judge"] not in (manifest.data.get("judges") or {}):
            manifest.set_judge(meta["ray_bench.judge"], {"settings": json.loads(meta["ray_bench.judge_settings"])})
    else:
        entry["stage"] = "answer"
        made_by = json.loads(meta.get("ray_bench.made_by", "{}"))
        if made_by.get("model_path") and key.split("/")[0] not in (manifest.data.get("models") or {}):
            manifest.set_model(key.split("/")[0], {"path": made_by["model_path"], "revision": made_by.get("revision")})
    return entry
