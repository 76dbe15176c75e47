"""Fixtures of the quantization tests: a briefly trained tiny model and calibration text.

Tests that run llmcompressor use the ``llmc`` fixture, which skips them (with the reason)
where the ``quantize`` extra is not installed, e.g. in the vLLM/serving environment.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

HAVE_LLMC = importlib.util.find_spec("llmcompressor") is not None
NO_LLMC_REASON = (
    "llmcompressor is not installed in this environment; run these tests in the quantization "
    "venv (pip install -e '.[dev,quantize]'), see docs/quantize.md"
)
#: Calibration used by the tests: small, because llmcompressor's sequential pipeline costs
#: ~0.1 s per sample and layer on 2 CPU cores.
TEST_SAMPLES = 16
TEST_MAX_LEN = 64


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread: the 2 cores are shared, and 2 threads under contention ran 4x slower."""
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def llmc():
    """Skip unless llmcompressor is importable."""
    if not HAVE_LLMC:
        pytest.skip(NO_LLMC_REASON)


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory) -> Path:
    """A tiny Llama (hidden 128) trained for 80 AdamW steps: peaked outputs, dims multiple of 128."""
    if not HAVE_LLMC:
        pytest.skip(NO_LLMC_REASON)
    from ray_bench.demo.train import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("base") / "tiny", steps=80, batch_size=8, seq_len=48)


@pytest.fixture(scope="session")
def calib_file(tmp_path_factory) -> Path:
    """200 generated sentences as JSONL."""
    from ray_bench.demo.tiny import default_corpus

    path = tmp_path_factory.mktemp("calib") / "calib.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in default_corpus(200, seed=11)) + "\n")
    return path


@pytest.fixture(scope="session")
def calib(calib_file):
    """CalibrationConfig over ``calib_file`` sized for tests."""
    from ray_bench.quantize.config import CalibrationConfig

    return CalibrationConfig(source=str(calib_file), num_samples=TEST_SAMPLES, max_seq_length=TEST_MAX_LEN, template="{text}")
