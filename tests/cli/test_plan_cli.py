"""`ray-bench plan`: run's flags, a cost table on stdout, nothing written, no Ray."""

import sys

import pytest

from ray_bench.cli.main import main


def test_plan_prints_the_table_and_writes_nothing(tmp_path, capsys):
    from ray_bench.datasets import prepare

    prepare("sample", tmp_path / "data", ["BBQ", "CEB-Continuation-S"], log=lambda *_: None)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["plan", "--model", "base=org/base", "--dataset", "BBQ", "--dataset", "CEB-Continuation-S", "--data",
              str(tmp_path / "data"), "--out", str(out), "--engine", "dummy", "--tokens-per-second", "1000",
              "--decode-tokens-per-second", "100"])
    assert info.value.code == 0
    captured = capsys.readouterr()
    assert "BBQ" in captured.out and "CEB-Continuation-S" in captured.out and "(all)" in captured.out
    assert captured.err.startswith("Plan: 2 shard(s) to run (0 done), 8 questions") and "GPU-hours" in captured.err
    assert not out.exists()  # no manifest, no lock: nothing reserved or written
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_plan_refuses_what_run_refuses(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["plan", "--model", f"m={tmp_path}/missing", "--dataset", "BBQ", "--data", str(tmp_path),
              "--out", str(tmp_path / "o")])
    assert info.value.code == 1 and "does not exist" in capsys.readouterr().err
