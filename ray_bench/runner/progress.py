"""Progress a cluster user can follow: per actor group questions done, questions/s and an ETA.

On a terminal: rich progress bars on stderr. Elsewhere (``--quiet``, a Ray job's log, a pipe):
one line per group on stderr at most every ``interval_s`` and when the group ends. Either way
the same figures go into the manifest's ``progress`` (see :meth:`Progress.snapshot`), so a
second terminal (``cat OUT/manifest.json``) sees them too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Group:
    total: int = 0
    done: int = 0
    started: float | None = None
    last_line: float = 0.0


@dataclass
class Progress:
    """Counts per group; ``bars`` is a rich ``Progress`` (or ``None`` for line output)."""

    bars: Any = None
    write: Callable[[str], None] = field(default=lambda text: sys.stderr.write(text + "\n"))
    interval_s: float = 15.0
    groups: dict[str, _Group] = field(default_factory=dict)
    _ids: dict[str, Any] = field(default_factory=dict)

    def grow(self, name: str, n: int) -> None:
        """``n`` more questions queued for group ``name``."""
        group = self.groups.setdefault(name, _Group())
        group.total += n
        if self.bars is not None:
            if name not in self._ids:
                self._ids[name] = self.bars.add_task(name, total=0)
            self.bars.update(self._ids[name], total=group.total)

    def shrink(self, name: str, n: int) -> None:
        """``n`` queued questions of group ``name`` will not run after all."""
        group = self.groups.setdefault(name, _Group())
        group.total -= n
        if self.bars is not None and name in self._ids:
            self.bars.update(self._ids[name], total=group.total)

    def start(self, name: str) -> None:
        """The group's actors were started: its rate counts from now."""
        self.groups.setdefault(name, _Group()).started = time.time()

    def advance(self, name: str, n: int) -> None:
        """``n`` questions of group ``name`` finished (landed or failed)."""
        group = self.groups.setdefault(name, _Group())
        group.done += n
        if self.bars is not None:
            self.bars.advance(self._ids[name], n)
            return
        now = time.time()
        if group.done >= group.total or now - group.last_line >= self.interval_s:
            group.last_line = now
            self.write(self.line(name))

    def figures(self, name: str) -> dict[str, Any]:
        """``done``, ``total``, ``questions_per_s`` and ``eta_s`` of one group (rate from its start)."""
        group = self.groups[name]
        elapsed = time.time() - group.started if group.started else 0.0
        rate = group.done / elapsed if elapsed > 0 and group.done else None
        eta = (group.total - group.done) / rate if rate else None
        return {"done": group.done, "total": group.total,
                "questions_per_s": round(rate, 3) if rate else None, "eta_s": round(eta, 1) if eta is not None else None}

    def line(self, name: str) -> str:
        """``base: 120/300 questions (40%), 4.1 q/s, ETA 0:00:44``."""
        f = self.figures(name)
        share = f"{100 * f['done'] / f['total']:.0f}%" if f["total"] else "-"
        rate = f"{f['questions_per_s']:.1f} q/s" if f["questions_per_s"] else "- q/s"
        eta = time.strftime("%H:%M:%S", time.gmtime(f["eta_s"])) if f["eta_s"] is not None else "-"
        return f"{name}: {f['done']}/{f['total']} questions ({share}), {rate}, ETA {eta}"

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every group's figures, stamped, for the manifest."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        return {name: {**self.figures(name), "updated_at": stamp} for name in self.groups}


@contextmanager
def progress_display(enabled: bool) -> Iterator[Progress]:
    """Bars when ``enabled`` and stderr is a terminal, else periodic lines."""
    from rich.console import Console

    console = Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield Progress()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress as Bars,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    with bars:
        yield Progress(bars=bars)
