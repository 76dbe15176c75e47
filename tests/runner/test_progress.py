"""Per-group questions/s and ETA: the figures, the log lines off a terminal, the manifest snapshot."""

import pytest

from ray_bench.runner import progress as progress_mod
from ray_bench.runner.progress import Progress


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(progress_mod.time, "time", lambda: now[0])
    return now


def test_rate_and_eta_from_the_groups_start(clock):
    lines = []
    p = Progress(write=lines.append, interval_s=15)
    p.grow("base", 60)
    p.grow("base", 40)
    p.start("base")
    clock[0] += 10
    p.advance("base", 30)  # first line: the interval since "never" has passed
    assert p.figures("base") == {"done": 30, "total": 100, "questions_per_s": 3.0, "eta_s": pytest.approx(23.3, abs=0.05)}
    assert lines == ["base: 30/100 questions (30%), 3.0 q/s, ETA 00:00:23"]
    clock[0] += 5
    p.advance("base", 20)  # 5 s later: no line (interval 15 s)
    assert len(lines) == 1
    clock[0] += 5
    p.advance("base", 50)  # the group ends: always a line
    assert lines[-1] == "base: 100/100 questions (100%), 5.0 q/s, ETA 00:00:00"
    snap = p.snapshot()["base"]
    assert (snap["done"], snap["total"], snap["questions_per_s"], snap["eta_s"]) == (100, 100, 5.0, 0.0)
    assert snap["updated_at"]


def test_a_group_not_started_has_no_rate(clock):
    p = Progress(write=lambda _: None)
    p.grow("judge", 10)
    assert p.figures("judge") == {"done": 0, "total": 10, "questions_per_s": None, "eta_s": None}
    assert p.line("judge") == "judge: 0/10 questions (0%), - q/s, ETA -"
