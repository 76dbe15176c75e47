"""`ray-bench quantize`: flags, config merging, errors, stdout/stderr split."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_bench.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def test_study_config_dry_run_lists_fifty_variants(capsys):
    code, out, _ = _run(capsys, "quantize", "--config", str(ROOT / "jobs" / "study_models.yaml"), "--dry-run")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 50
    assert lines[0].split("\t")[:2] == ["planned", "llama3.1-8b-instruct-awq-w4a16"]
    assert any("qwen2.5-14b-instruct-smoothquant-rtn-w4a16" in line for line in lines)


def test_flags_override_the_config(capsys, tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("models: [a=/m/a]\nvariants: ['gptq:w4a16', 'awq:w4a16']\nout_dir: /nowhere\n")
    code, out, _ = _run(capsys, "quantize", "--config", str(cfg), "--method", "rtn", "--scheme", "w8a8",
                        "--out", str(tmp_path / "o"), "--dry-run")
    assert code == 0 and out.splitlines() == [f"planned\ta-rtn-w8a8\t{tmp_path / 'o' / 'a-rtn-w8a8'}\t/m/a"]


@pytest.mark.parametrize(
    ("args", "error", "hint"),
    [(["--method", "gtpq", "--scheme", "w4a16"], "unknown quantization method 'gtpq'. Did you mean 'gptq'?",
      "Known quantization methods"),
     (["--method", "rtn", "--scheme", "int4"], "unknown quantization scheme 'int4'", "Known quantization schemes: w4a16, w8a16, w8a8"),
     (["--method", "rtn"], "--method and --scheme go together", "Give both"),
     (["--method", "rtn", "--scheme", "w4a16", "--calibration-samples", "0"],
      "invalid options: calibration.num_samples: Input should be greater than 0", "")],
)
def test_bad_requests_fail_with_error_and_hint(capsys, tmp_path, args, error, hint):
    code, out, err = _run(capsys, "quantize", "--model", f"m={tmp_path}", "--out", str(tmp_path / "o"), *args)
    assert code == 1 and out == ""
    assert f"Error: {error}" in err.replace("\n", " ") and f"Hint: {hint}" in err


def test_missing_model_and_out_are_reported(capsys):
    code, _, err = _run(capsys, "quantize", "--method", "rtn", "--scheme", "w4a16")
    assert code == 1 and "models" in err and "out_dir" in err


def test_missing_calibration_file_fails_before_the_model_is_loaded(capsys, tmp_path):
    code, out, err = _run(capsys, "quantize", "--model", f"m={tmp_path / 'no-model'}", "--method", "gptq",
                          "--scheme", "w4a16", "--calibration", str(tmp_path / "calib.jsonl"),
                          "--out", str(tmp_path / "o"), "--executor", "local")
    assert code == 1
    assert out.startswith("failed\tm-gptq-w4a16\t-\tConfigError: calibration file")
    assert "does not exist" in err and "ModelLoadError" not in out + err


def test_local_rtn_run_prints_results_to_stdout_only(llmc, capsys, tmp_path):
    from ray_bench.demo.tiny import build_tiny_model

    base = build_tiny_model(tmp_path / "tiny")
    args = ["quantize", "--model", f"tiny={base}", "--method", "rtn", "--scheme", "w4a16", "--out", str(tmp_path / "o")]
    code, out, err = _run(capsys, *args)
    assert code == 0
    status, name, path, summary = out.strip().split("\t")
    assert (status, name, Path(path)) == ("ok", "tiny-rtn-w4a16", tmp_path / "o" / "tiny-rtn-w4a16")
    assert summary.startswith("rtn w4a16: int4 weights, group 128, symmetric; no calibration")
    assert "Compression lifecycle" in err  # llmcompressor's log went to stderr

    code, out, err = _run(capsys, *args)
    assert code == 1 and out.startswith("failed\ttiny-rtn-w4a16") and "--overwrite" in err
    code, out, _ = _run(capsys, *args, "--skip-existing")
    assert code == 0 and out.startswith("skipped\ttiny-rtn-w4a16")
