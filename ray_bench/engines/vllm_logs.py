"""The root cause of a failed vLLM load, which vLLM itself only prints.

vLLM builds its engine core in a child process; when that process dies during start-up
the parent raises only "Engine core initialization failed. See root cause above", and the
cause (say ``cpu_gemm_wna16 not implemented for 'Float'``) is in the child's stderr,
inside a Ray actor that is a worker log file nobody reads. While a model loads,
:func:`tee_stderr` passes file descriptor 2 (inherited by the child) through a pipe that
keeps the last lines and still forwards everything; :func:`root_cause` picks the
exception out of them.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

KEEP_LINES = 400
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# "(EngineCore pid=12) ERROR 12-01 12:00:00 [core.py:1] " and Ray's "(pid=12) " prefixes.
_PREFIX = re.compile(r"^(\([^)]*\)\s*)?((DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\S+\s+\S+\s+\[[^\]]*\]\s*)?")
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)):\s*(.+)$")
_GENERIC = ("Engine core initialization failed", "EngineCore failed to start")


class CapturedLines:
    """The lines seen on stderr so far (the last :data:`KEEP_LINES`)."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=KEEP_LINES)
        self._lock = threading.Lock()
        self.done = threading.Event()

    def add(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def lines(self, wait: float = 0.0) -> list[str]:
        """A copy of the lines, after waiting up to ``wait`` s for writers to close the pipe."""
        if wait:
            self.done.wait(wait)
        with self._lock:
            return list(self._lines)


def _pump(read_fd: int, forward_fd: int, sink: CapturedLines) -> None:
    pending = b""
    try:
        while chunk := os.read(read_fd, 65536):
            try:
                os.write(forward_fd, chunk)
            except OSError:
                pass
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                sink.add(raw.decode("utf-8", "replace"))
        if pending:
            sink.add(pending.decode("utf-8", "replace"))
    finally:
        os.close(read_fd)
        sink.done.set()


@contextmanager
def tee_stderr() -> Iterator[CapturedLines]:
    """Capture stderr (this process and the children it starts) while forwarding it.

    After the block this process writes to its own stderr again; children started inside
    keep writing through the pipe, still forwarded, until they exit.
    """
    sink = CapturedLines()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_fd, write_fd = os.pipe()
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): capture nothing
        yield sink
        return
    forward = os.dup(saved)
    threading.Thread(target=_pump, args=(read_fd, forward, sink), daemon=True, name="ray-bench-stderr").start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield sink
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def root_cause(lines: list[str], fallback: str) -> str:
    """The last specific exception line in ``lines`` (prefixes stripped), else ``fallback``.

    vLLM's generic "Engine core initialization failed" lines are skipped, so what is
    returned is the child's own error, e.g. ``RuntimeError: cpu_gemm_wna16 not implemented
    for 'Float'``.
    """
    for line in reversed(lines):
        text = _PREFIX.sub("", _ANSI.sub("", line)).strip()
        match = _EXCEPTION.match(text)
        if match and not any(g in text for g in _GENERIC):
            return text
    return fallback
