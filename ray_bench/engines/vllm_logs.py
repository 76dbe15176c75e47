"""The root cause of a failed vLLM load, which vLLM itself only prints.

vLLM builds its engine core in a child process; when that process dies during start-up
the parent raises only "Engine core initialization failed. See root cause above", and the
cause (say ``cpu_gemm_wna16 not implemented for 'Float'``) is in the child's stderr,
inside a Ray actor that is a worker log file nobody reads. vLLM's logger writes to
stdout (``VLLM_LOGGING_STREAM``) and Python tracebacks go to stderr, so while a model
loads :func:`tee_output` passes file descriptors 1 and 2 (inherited by the children)
through pipes that keep the last lines and still forward everything; :func:`root_cause`
picks the exception out of them.
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
_GENERIC = (
    "Engine core initialization failed",
    "EngineCore failed to start",
    "WorkerProc initialization failed",
    "See root cause above",
    "See stack trace for root cause",
)


class CapturedLines:
    """The lines seen on stderr so far (the last :data:`KEEP_LINES`)."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=KEEP_LINES)
        self._lock = threading.Lock()
        self._open = 0
        self.done = threading.Event()

    def opened(self) -> None:
        with self._lock:
            self._open += 1

    def closed(self) -> None:
        with self._lock:
            self._open -= 1
            if self._open <= 0:
                self.done.set()

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
        os.close(forward_fd)
        sink.closed()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # None under pythonw and some embedders
            stream.flush()


@contextmanager
def tee_output(fds: tuple[int, ...] = (1, 2)) -> Iterator[CapturedLines]:
    """Capture ``fds`` (this process and the children it starts) while forwarding them.

    After the block this process writes to its own stdout/stderr again; children started
    inside keep writing through the pipes, still forwarded, until they exit.
    """
    sink = CapturedLines()
    saved: dict[int, int] = {}
    try:
        _flush()
        for fd in fds:
            saved[fd] = os.dup(fd)
    except (OSError, ValueError):  # no real descriptors (embedded interpreters): capture nothing
        for dup in saved.values():
            os.close(dup)
        yield sink
        return
    for fd in fds:
        read_fd, write_fd = os.pipe()
        sink.opened()
        threading.Thread(
            target=_pump, args=(read_fd, os.dup(saved[fd]), sink), daemon=True, name=f"ray-bench-tee-{fd}"
        ).start()
        os.dup2(write_fd, fd)
        os.close(write_fd)
    try:
        yield sink
    finally:
        _flush()
        for fd, dup in saved.items():
            os.dup2(dup, fd)
            os.close(dup)


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
