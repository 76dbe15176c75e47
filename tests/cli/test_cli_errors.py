"""CLI contract: one Error line and one Hint line, exit code 1; debug shows the traceback."""

import subprocess
import sys

import pytest

from ray_bench.cli.main import main
from ray_bench.errors import RayBenchError


def _fail(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1
    return err


def test_analyze_missing_results(tmp_path, capsys):
    err = _fail(["analyze", "--results", str(tmp_path / "nope"), "--base", "b", "--out", str(tmp_path / "a")], capsys)
    assert err[0].startswith("Error: results directory") and "nope" in err[0]
    assert err[1].startswith("Hint: ") and len(err) == 2


def test_run_bad_model_path(tmp_path, capsys):
    err = _fail(["run", "--model", f"m={tmp_path}/missing", "--dataset", "BBQ", "--data", str(tmp_path),
                 "--out", str(tmp_path / "o")], capsys)
    assert "does not exist" in err[0] and err[1].startswith("Hint:")


def test_run_invalid_flag_value(tmp_path, capsys):
    err = _fail(["run", "--model", "m=org/x", "--dataset", "BBQ", "--data", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--shard-size", "0"], capsys)
    assert err[0].startswith("Error: invalid run config") and "shard_size" in err[0]


def test_unknown_engine_suggests_closest(tmp_path, capsys):
    err = _fail(["run", "--model", "m=org/x", "--dataset", "BBQ", "--data", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--engine", "hff"], capsys)
    assert "unknown engine 'hff'" in err[0] and "Did you mean 'hf'" in err[0]
    assert "dummy" in err[1]


def test_debug_env_shows_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_BENCH_DEBUG", "1")
    with pytest.raises(RayBenchError):
        main(["analyze", "--results", str(tmp_path / "nope"), "--base", "b", "--out", str(tmp_path)])


def test_import_is_light():
    code = (
        "import sys, ray_bench, ray_bench.cli.main, ray_bench.runner, ray_bench.engines.base, "
        "ray_bench.datasets, ray_bench.config, ray_bench.results;"
        "print(sorted(m for m in ('torch', 'transformers', 'vllm', 'ray', 'pyarrow', 'llmcompressor') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bad_engine_option_fails_before_ray(tmp_path, capsys):
    err = _fail(["run", "--model", "m=org/x", "--dataset", "BBQ", "--data", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--engine", "vllm", "--engine-option", "gpu_memory_utlization=0.9"],
                capsys)
    assert "gpu_memory_utlization" in err[0] and err[1].startswith("Hint:")


def test_hf_option_typo_suggests_closest(tmp_path, capsys):
    err = _fail(["run", "--model", "m=org/x", "--dataset", "BBQ", "--data", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--engine-option", "share_prefix=false"], capsys)
    assert "unknown hf engine option 'share_prefix'" in err[0] and "share_prefixes" in err[0]


def test_judge_without_a_run_manifest(tmp_path, capsys):
    err = _fail(["judge", "--results", str(tmp_path), "--judge", "lg=org/guard", "--engine", "dummy"], capsys)
    assert err[0].startswith("Error: ") and "no run manifest" in err[0] and err[1].startswith("Hint:")


def test_judge_bad_turns_and_a_missing_judge_checkpoint(tmp_path, capsys):
    err = _fail(["judge", "--results", str(tmp_path), "--judge-turns", "first"], capsys)
    assert "judge.judge_turns" in err[0] and len(err) == 2
    err = _fail(["judge", "--results", str(tmp_path), "--judge", f"lg={tmp_path}/missing"], capsys)
    assert "does not exist" in err[0] and err[1].startswith("Hint:")


def test_reference_decoding_with_a_temperature_is_refused(tmp_path, capsys):
    err = _fail(["run", "--model", "m=org/x", "--dataset", "BBQ", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--reference-decoding", "--temperature", "0.5"], capsys)
    assert "reference_decoding fixes the decoding" in err[0] and "temperature" in err[0]


def test_analyze_out_an_existing_file(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("x")
    err = _fail(["analyze", "--results", str(tmp_path), "--base", "b", "--out", str(target)], capsys)
    assert "is an existing file, not a directory" in err[0] and len(err) == 2
    assert target.read_text() == "x"


def test_datasets_prepare_out_an_existing_file(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("x")
    err = _fail(["datasets", "prepare", "--source", "sample", "--out", str(target)], capsys)
    assert "is an existing file, not a directory" in err[0] and err[1].startswith("Hint:") and len(err) == 2
    assert target.read_text() == "x"
