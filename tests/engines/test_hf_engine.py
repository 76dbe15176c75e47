"""HF engine lifecycle: registry, loading errors, info, close, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ray_bench.config import EngineConfig, ModelSpec
from ray_bench.engines.base import Engine, ScoreRequest, create_engine
from ray_bench.errors import EngineError, ModelLoadError


def test_importing_the_package_does_not_import_torch() -> None:
    code = (
        "import sys, ray_bench, ray_bench.engines, ray_bench.engines.base, ray_bench.engines.batching\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_path_raises_model_load_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ModelLoadError) as info:
        create_engine(ModelSpec(name="m", path=str(missing)), EngineConfig(name="hf", device="cpu"))
    assert str(missing) in info.value.message and "does not exist" in info.value.message
    assert "save_pretrained" in info.value.hint


def test_invalid_checkpoint_raises_model_load_error(tmp_path: Path, tiny_tokenizer_dir: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "llama", "hidden_size": "oops"')
    with pytest.raises(ModelLoadError) as info:
        create_engine(ModelSpec(name="m", path=str(bad)), EngineConfig(name="hf", device="cpu"))
    assert str(bad) in info.value.message and info.value.hint
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        create_engine(ModelSpec(name="m", path=str(empty)), EngineConfig(name="hf", device="cpu"))


def test_info_and_close(tiny_qwen2_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    engine = create_engine(ModelSpec(name="q", path=str(tiny_qwen2_dir)), EngineConfig(name="hf"))
    assert isinstance(engine, Engine)
    info = engine.info()
    assert (info.engine, info.model_path, info.dtype, info.device) == ("hf", str(tiny_qwen2_dir), "float32", "cpu")
    assert info.extra["transformers"] == transformers.__version__
    assert info.extra["torch"] == torch.__version__
    assert info.extra["attn_implementation"] == "sdpa"
    assert info.extra["quantization"] == "none"
    engine.close()
    assert engine.model is None
    with pytest.raises(EngineError, match="closed"):
        engine.score_choices([ScoreRequest("q", "Hi", ("a", "b"))])
