"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

Every writer of results, manifests, prepared datasets, caches and cards goes through
:func:`atomic_path`: write to a unique temporary name in the same folder (so the rename
stays on one filesystem), then ``os.replace``; on failure the temporary file is removed
and any old file is left untouched. Standard library only (besides ray_bench.errors).

The final file has the mode a plain ``open(path, "w")`` gives, ``0o666 & ~umask``, so
result directories shared on a cluster (umask 002) stay group-writable.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ray_bench.errors import RayBenchError

#: Names tried before giving up; 48 random bits each, so a second try is already rare.
_TEMP_ATTEMPTS = 100
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _create_temp(target: Path) -> Path:
    """Create a new empty file next to ``target``, with mode ``0o666`` less the umask.

    ``tempfile.mkstemp`` always creates mode 0600 and ``os.replace`` keeps it. Asking
    for 0666 in ``os.open`` lets the kernel apply the umask (and a directory's default
    ACL) exactly as for a plain ``open()``. Reading the umask instead would need
    ``os.umask(0)`` then a restore, a window in which files that other threads create
    get mode 0666; no umask is read or changed here, so this is thread-safe.
    """
    for _ in range(_TEMP_ATTEMPTS):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, _OPEN_FLAGS, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    # Only a folder flooded with our own temporary names gets here.
    raise RayBenchError(
        f"could not create a temporary file next to {target}: {_TEMP_ATTEMPTS} random names were all taken",
        hint=f"Remove the stale .{target.name}.*.tmp files in {target.parent} and run the command again.",
    )


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` when the block succeeds.

    The temporary file already exists (empty, mode ``0o666 & ~umask``); writers that
    open it for writing keep that mode, and so does the final file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (non-JSON values via ``str``) to ``path`` atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, default=str) + "\n").encode("utf-8"))
