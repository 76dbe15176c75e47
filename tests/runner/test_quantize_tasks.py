"""Quantization variants as Ray tasks, in the quantization environment.

The tasks run under ``runtime_env={"py_executable": <quant python>}``: the interpreter of
this session when it has llmcompressor, else ``$RAY_BENCH_QUANT_PYTHON``, else the
repository's ``.venv-quant``. Run from the main venv (no llmcompressor), this tests the
real environment split.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ray_bench.quantize.config import CalibrationConfig, QuantizeEnvironment, QuantizeResources
from ray_bench.quantize.plan import VariantTask
from ray_bench.runner.quantize_tasks import runtime_env_for, task_options

ROOT = Path(__file__).resolve().parents[2]


def _quant_python() -> str | None:
    if importlib.util.find_spec("llmcompressor") is not None:
        return sys.executable
    for candidate in (os.environ.get("RAY_BENCH_QUANT_PYTHON"), str(ROOT / ".venv-quant" / "bin" / "python")):
        if candidate and Path(candidate).is_file():
            probe = subprocess.run([candidate, "-c", "import llmcompressor, ray_bench"], capture_output=True)
            if probe.returncode == 0:
                return candidate
    return None


QUANT_PYTHON = _quant_python()
needs_quant_env = pytest.mark.skipif(
    QUANT_PYTHON is None,
    reason="no interpreter with llmcompressor (install .[quantize] here, set RAY_BENCH_QUANT_PYTHON, "
    "or create .venv-quant as in docs/quantize.md)",
)


def test_gpu_tasks_reserve_no_cpu():
    res = QuantizeResources(gpus_per_task=2, cpus_per_task=1.5, gpus_per_model={"big": 4})
    assert task_options(res, "gpu", None) == {"max_retries": 0, "num_gpus": 2, "num_cpus": 0}
    assert task_options(res, "gpu", None, "big")["num_gpus"] == 4
    assert task_options(res, "cpu", {"pip": ["x"]}) == {
        "max_retries": 0, "num_cpus": 1.5, "num_gpus": 0, "runtime_env": {"pip": ["x"]}
    }


def test_runtime_env(monkeypatch, tmp_path):
    from ray_bench.errors import ConfigError

    monkeypatch.delenv("RAY_BENCH_QUANT_PYTHON", raising=False)
    assert runtime_env_for(QuantizeEnvironment()) is None
    assert runtime_env_for(QuantizeEnvironment(pip=("llmcompressor==0.14.0.1",))) == {"pip": ["llmcompressor==0.14.0.1"]}
    assert runtime_env_for(QuantizeEnvironment(python=sys.executable, env_vars={"A": "1"})) == {
        "py_executable": sys.executable, "env_vars": {"A": "1"}
    }
    monkeypatch.setenv("RAY_BENCH_QUANT_PYTHON", sys.executable)
    assert runtime_env_for(QuantizeEnvironment()) == {"py_executable": sys.executable}
    with pytest.raises(ConfigError, match="does not exist"):
        runtime_env_for(QuantizeEnvironment(python=str(tmp_path / "python")))
    with pytest.raises(Exception, match="not both"):
        QuantizeEnvironment(python="p", pip=("x",))


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    temp = tempfile.mkdtemp(prefix="rbq", dir="/tmp")
    assert len(temp) <= 45
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, _temp_dir=temp,
             log_to_driver=False)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    pytest.importorskip("transformers")
    from ray_bench.demo.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("qbase") / "tiny")


def _task(base, out, method, scheme, calibration=None, **kw):
    from ray_bench.config import ModelSpec

    return VariantTask(model=ModelSpec(name="tiny", path=str(base)), method=method, scheme=scheme,
                       out_dir=str(out), calibration=calibration or CalibrationConfig(), **kw)


@pytest.mark.slow
@needs_quant_env
def test_variants_run_in_parallel_and_a_failure_does_not_stop_the_others(ray_local, tiny_base, tmp_path):
    from ray_bench.config import ModelSpec
    from ray_bench.runner.quantize_tasks import run_quantize_tasks

    calib_file = tmp_path / "c.txt"
    calib_file.write_text("\n".join(f"the person number {i} was kind and smart." for i in range(20)))
    cal = CalibrationConfig(source=str(calib_file), num_samples=8, max_seq_length=32, template="{text}")
    good = [_task(tiny_base, tmp_path / "out", "rtn", "w4a16"), _task(tiny_base, tmp_path / "out", "gptq", "w8a8", cal)]
    broken = VariantTask(model=ModelSpec(name="gone", path=str(tmp_path / "missing")), method="rtn",
                         scheme="w8a16", out_dir=str(tmp_path / "out"))
    seen = []
    results = run_quantize_tasks(
        [good[0], broken, good[1]],
        resources=QuantizeResources(device="cpu", cpus_per_task=1),
        environment=QuantizeEnvironment(python=QUANT_PYTHON),
        on_result=seen.append,
    )
    assert [r.name for r in results] == ["tiny-rtn-w4a16", "gone-rtn-w8a16", "tiny-gptq-w8a8"]
    assert [r.status for r in results] == ["ok", "failed", "ok"], [(r.error, r.hint) for r in results]
    assert "ModelLoadError" in results[1].error and results[1].hint
    assert len(seen) == 3
    card = json.loads((tmp_path / "out" / "tiny-gptq-w8a8" / "quantization_card.json").read_text())
    assert card["calibration"]["num_samples"] == 8 and card["versions"]["llmcompressor"]
    assert results[0].card["method"] == "rtn"

    # A rerun refuses complete outputs up front, or skips them when asked.
    again = run_quantize_tasks(good[:1], resources=QuantizeResources(device="cpu"),
                               environment=QuantizeEnvironment(python=QUANT_PYTHON))
    assert again[0].status == "failed" and "already exists" in again[0].error
    skipped = run_quantize_tasks(good[:1], resources=QuantizeResources(device="cpu"),
                                 environment=QuantizeEnvironment(python=QUANT_PYTHON), skip_existing=True)
    assert skipped[0].status == "skipped" and skipped[0].card["scheme"] == "w4a16"


@pytest.mark.slow
@needs_quant_env
def test_bad_calibration_fails_calibrated_variants_before_any_model_load(ray_local, tiny_base, tmp_path):
    from ray_bench.runner.quantize_tasks import run_quantize_tasks

    cal = CalibrationConfig(source=str(tmp_path / "missing.jsonl"), num_samples=4)
    tasks = [_task(tiny_base, tmp_path / "out", "awq", "w4a16", cal), _task(tiny_base, tmp_path / "out", "gptq", "w4a16", cal)]
    results = run_quantize_tasks(tasks, resources=QuantizeResources(device="cpu"),
                                 environment=QuantizeEnvironment(python=QUANT_PYTHON))
    assert [r.status for r in results] == ["failed", "failed"]
    assert all("does not exist" in r.error for r in results)
    assert not (tmp_path / "out").exists()


def test_missing_llmcompressor_is_reported_by_the_preflight(monkeypatch):
    from ray_bench.runner import quantize_tasks

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    checked = quantize_tasks.preflight([])
    assert not checked["ok"] and "llmcompressor" in checked["error"]
    assert "ray-bench[quantize]" in checked["hint"] and "--quant-python" in checked["hint"]


def test_preflight_loads_each_calibration_once_and_reports_bad_ones(tmp_path, monkeypatch):
    from ray_bench.runner import quantize_tasks

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    good = tmp_path / "c.txt"
    good.write_text("a b c\nd e f\n")
    checked = quantize_tasks.preflight([
        CalibrationConfig(source=str(good), num_samples=2, template="{text}"),
        CalibrationConfig(source=str(tmp_path / "missing.txt"), num_samples=2),
    ])
    assert checked["ok"]
    assert sorted(checked["calibrations"][0]["data"].texts) == ["a b c", "d e f"]
    assert "does not exist" in checked["calibrations"][1]["error"]
