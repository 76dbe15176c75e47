"""One writer per results directory: an exclusive ``flock`` on ``<out>/.ray-bench.lock``.

Two drivers writing one ``--out`` would each rewrite the manifest from their own view and
drop the other's records. The lock is taken before the manifest is read and held until the
driver exits; the kernel releases it when the process dies (even by SIGKILL), so a stale
lock never blocks the next run. The file records who holds it, for the error message.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ray_bench import provenance
from ray_bench.errors import ResultsError

LOCK_NAME = ".ray-bench.lock"


@contextmanager
def output_lock(out_dir: str | Path, command: str) -> Iterator[None]:
    """Hold the exclusive lock of ``out_dir`` for the block.

    Raises:
        ResultsError: another process holds it (named with its pid, host and start time).
    """
    import fcntl

    path = Path(out_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ResultsError(
                f"{str(out_dir)!r} is being written by another ray-bench process ({_holder(path)})",
                hint="Wait for it to finish, or write to another --out directory.",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                                 "started": provenance.now_iso()}).encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    return f"`ray-bench {info.get('command', '?')}`, pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}"
