"""Session-scoped tiny models for the engine tests (built once in a tmp dir, no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A locally trained tokenizer whose chat template starts with BOS and ends in a newline."""
    from ray_bench.demo.tiny import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path) -> Path:
    """A random tiny Llama (hidden 128, 2 layers) saved with ``save_pretrained``."""
    from ray_bench.demo.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), arch="llama", tokenizer_dir=tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path) -> Path:
    """A random tiny Qwen2 (hidden 128, 2 layers) saved with ``save_pretrained``."""
    from ray_bench.demo.tiny import build_tiny_model

    return build_tiny_model(
        tmp_path_factory.mktemp("tiny-qwen2"), arch="qwen2", tokenizer_dir=tiny_tokenizer_dir, seed=1
    )
