"""Calibration text: a Hugging Face dataset or a local text/JSONL/Parquet file, seeded.

Loaded *before* any model so that a missing file or an offline machine fails in a
second with a clear error instead of after minutes of model loading. The hub is
probed with one short connection attempt first: ``datasets`` would otherwise retry for
about 25 s before giving up.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ray_bench.errors import ConfigError, DependencyError, QuantizationError
from ray_bench.quantize.config import CALIBRATION_FILE_SUFFIXES, CalibrationConfig

_OFFLINE_HINT = (
    "Pass a local .txt/.jsonl/.parquet file with --calibration FILE, or download the dataset "
    "once and set HF_HUB_OFFLINE=1 to use the cached copy."
)


@dataclass(frozen=True)
class CalibrationData:
    """Calibration samples plus where they came from (for the card).

    Attributes:
        texts: The samples, template applied, in the seeded order.
        source: Card entry: kind (``hub``/``file``), id or path, split/field, sha256 of a file.
    """

    texts: tuple[str, ...]
    source: dict[str, Any]


def load_calibration(cfg: CalibrationConfig) -> CalibrationData:
    """Load, shuffle (seeded) and select ``cfg.num_samples`` samples.

    Raises:
        ConfigError: the file is missing, has an unknown suffix, lacks the text field,
            or holds fewer non-empty samples than requested.
        QuantizationError: the hub dataset cannot be reached or loaded (offline).
        DependencyError: ``datasets`` (hub) or ``pyarrow`` (Parquet) is missing.
    """
    if cfg.is_local:
        raw, source = _read_file(cfg)
    else:
        raw, source = _read_hub(cfg)
    texts = [t for t in raw if isinstance(t, str) and t.strip()]
    if len(texts) < cfg.num_samples:
        raise ConfigError(
            f"calibration source {cfg.source!r} has {len(texts)} non-empty samples, "
            f"fewer than the {cfg.num_samples} requested",
            hint="Lower --calibration-samples or use a larger calibration set.",
        )
    random.Random(cfg.seed).shuffle(texts)
    chosen = tuple(cfg.template.replace("{text}", t) for t in texts[: cfg.num_samples])
    source.update(
        num_samples=cfg.num_samples,
        available_samples=len(texts),
        max_seq_length=cfg.max_seq_length,
        template=cfg.template,
        seed=cfg.seed,
    )
    return CalibrationData(chosen, source)


def _read_file(cfg: CalibrationConfig) -> tuple[list[Any], dict[str, Any]]:
    path = Path(cfg.source).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"calibration file {str(path)!r} does not exist",
            hint="Pass an existing .txt/.jsonl/.parquet file or a Hugging Face dataset id to --calibration.",
        )
    suffix = path.suffix.lower()
    if suffix not in CALIBRATION_FILE_SUFFIXES:
        raise ConfigError(
            f"calibration file {str(path)!r} has unsupported suffix {suffix!r}",
            hint=f"Use one of {', '.join(CALIBRATION_FILE_SUFFIXES)}.",
        )
    if suffix == ".txt":
        raw: list[Any] = path.read_text(encoding="utf-8").splitlines()
    elif suffix == ".parquet":
        raw = _read_parquet(path, cfg.text_field)
    else:
        raw = _read_jsonl(path, cfg.text_field)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return raw, {"kind": "file", "path": str(path.resolve()), "sha256": digest, "text_field": cfg.text_field}


def _read_jsonl(path: Path, field: str) -> list[Any]:
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"calibration file {str(path)!r} line {i} is not JSON: {exc.msg}") from None
        if not isinstance(row, dict) or field not in row:
            raise ConfigError(
                f"calibration file {str(path)!r} line {i} has no field {field!r}",
                hint="Set --calibration-field to the key holding the text.",
            )
        out.append(row[field])
    return out


def _read_parquet(path: Path, field: str) -> list[Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DependencyError("pyarrow", "quantize") from None
    table = pq.read_table(path)
    if field not in table.column_names:
        raise ConfigError(
            f"calibration file {str(path)!r} has no column {field!r} (columns: {table.column_names})",
            hint="Set --calibration-field to the column holding the text.",
        )
    return table.column(field).to_pylist()


def _hub_offline() -> bool:
    """Whether ``datasets`` will run in offline mode (cache only).

    Asks the libraries rather than the environment: they read the variables once, at
    import, so a variable set later does not make them offline.
    """
    try:
        from huggingface_hub import constants
    except ImportError:
        return any(os.environ.get(k, "") not in ("", "0") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    offline = constants.is_offline_mode()
    ds_config = getattr(sys.modules.get("datasets"), "config", None)  # any module may be called datasets
    if ds_config is not None:
        offline = offline or bool(getattr(ds_config, "HF_HUB_OFFLINE", False))
    return offline


def hub_reachable(timeout: float = 5.0) -> bool:
    """One TCP connection attempt to the hub endpoint (``HF_ENDPOINT`` or huggingface.co)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _read_hub(cfg: CalibrationConfig) -> tuple[list[Any], dict[str, Any]]:
    # Offline mode reads the cache only, so it needs no probe.
    if not _hub_offline() and not hub_reachable():
        raise QuantizationError(
            f"calibration dataset {cfg.source!r} is a Hugging Face id, but the hub is not reachable "
            "from this machine",
            hint=_OFFLINE_HINT,
        )
    try:
        import datasets
    except ImportError:
        raise DependencyError("datasets", "quantize") from None
    try:
        ds = datasets.load_dataset(cfg.source, split=cfg.split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; all mean "cannot load"
        raise QuantizationError(
            f"cannot load calibration dataset {cfg.source!r} (split {cfg.split!r}): {type(exc).__name__}: {exc}",
            hint=_OFFLINE_HINT,
        ) from exc
    if cfg.text_field not in ds.column_names:
        raise ConfigError(
            f"calibration dataset {cfg.source!r} has no column {cfg.text_field!r} (columns: {ds.column_names})",
            hint="Set --calibration-field to the column holding the text.",
        )
    fingerprint = getattr(ds, "_fingerprint", None)
    source = {"kind": "hub", "dataset": cfg.source, "split": cfg.split, "text_field": cfg.text_field}
    if fingerprint:
        source["fingerprint"] = fingerprint
    return list(ds[cfg.text_field]), source
