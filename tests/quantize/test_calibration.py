"""Calibration sources: local files, seeding, errors, offline hub (no llmcompressor needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ray_bench.errors import ConfigError, QuantizationError
from ray_bench.quantize import calibration as cal_mod
from ray_bench.quantize.calibration import load_calibration
from ray_bench.quantize.config import DEFAULT_CALIBRATION_DATASET, CalibrationConfig


def _cfg(source, **kw):
    kw.setdefault("template", "{text}")
    return CalibrationConfig(source=str(source), **kw)


@pytest.fixture
def texts():
    return [f"sentence number {i} about people." for i in range(30)]


def test_jsonl_is_seeded_and_sized(tmp_path, texts):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps({"body": t}) for t in texts) + "\n\n")
    a = load_calibration(_cfg(path, text_field="body", num_samples=10, seed=3))
    b = load_calibration(_cfg(path, text_field="body", num_samples=10, seed=3))
    c = load_calibration(_cfg(path, text_field="body", num_samples=10, seed=4))
    assert a.texts == b.texts and a.texts != c.texts and len(a.texts) == 10
    assert set(a.texts) <= set(texts)
    assert a.source["kind"] == "file" and len(a.source["sha256"]) == 64
    assert (a.source["num_samples"], a.source["available_samples"], a.source["seed"]) == (10, 30, 3)


def test_txt_skips_blank_lines_and_applies_template(tmp_path, texts):
    path = tmp_path / "c.txt"
    path.write_text("\n\n".join(texts))
    data = load_calibration(_cfg(path, num_samples=30, template="Q: {text}"))
    assert len(data.texts) == 30 and all(t.startswith("Q: sentence") for t in data.texts)


def test_parquet(tmp_path, texts):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": texts}), path)
    assert len(load_calibration(_cfg(path, num_samples=5)).texts) == 5
    with pytest.raises(ConfigError, match="no column 'body'"):
        load_calibration(_cfg(path, num_samples=5, text_field="body"))


def test_too_few_samples_is_an_error_not_a_clamp(tmp_path, texts):
    path = tmp_path / "c.txt"
    path.write_text("\n".join(texts))
    with pytest.raises(ConfigError, match="30 non-empty samples, fewer than the 31") as info:
        load_calibration(_cfg(path, num_samples=31))
    assert "--calibration-samples" in info.value.hint


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [("missing.jsonl", None, "does not exist"),
     ("bad.jsonl", '{"text": "a"}\nnot json\n', "line 2 is not JSON"),
     ("nofield.jsonl", '{"body": "a"}\n', "line 1 has no field 'text'"),
     ("c.csv", "a\n", "unsupported suffix")],
)
def test_bad_files(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_calibration(_cfg(path, num_samples=1))


def test_local_vs_hub_detection(tmp_path):
    assert not CalibrationConfig().is_local
    assert CalibrationConfig().source == DEFAULT_CALIBRATION_DATASET
    assert _cfg("./x.jsonl").is_local and _cfg("/abs/x").is_local and _cfg(tmp_path).is_local
    assert not _cfg("org/dataset").is_local


def test_offline_hub_fails_fast_with_a_clear_error(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(cal_mod, "hub_reachable", lambda timeout=5.0: False)
    start = time.perf_counter()
    with pytest.raises(QuantizationError, match="hub is not reachable") as info:
        load_calibration(CalibrationConfig())
    assert time.perf_counter() - start < 2
    assert "local .txt/.jsonl/.parquet" in info.value.hint


def test_offline_mode_without_cache_is_a_clear_error(tmp_path):
    """HF_HUB_OFFLINE=1 (read at import, hence a fresh process) and nothing cached."""
    pytest.importorskip("datasets")
    code = (
        "from ray_bench.quantize.calibration import load_calibration\n"
        "from ray_bench.quantize.config import CalibrationConfig\n"
        "from ray_bench.errors import QuantizationError\n"
        "try:\n    load_calibration(CalibrationConfig(source='nobody/not-cached-anywhere'))\n"
        "except QuantizationError as e:\n    print('ERR', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "ERR cannot load calibration dataset 'nobody/not-cached-anywhere'" in proc.stdout, proc.stderr[-2000:]
    assert time.perf_counter() - start < 30


def test_offline_error_comes_before_any_model_is_loaded(monkeypatch, tmp_path):
    from ray_bench.quantize import quantize_model

    monkeypatch.setattr(cal_mod, "hub_reachable", lambda timeout=5.0: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    # The base path does not exist: reaching the model loader would raise ModelLoadError.
    with pytest.raises(QuantizationError, match="hub is not reachable"):
        quantize_model(tmp_path / "no-such-model", tmp_path / "out", "gptq", "w4a16")
    assert not (tmp_path / "out").exists()
