"""Fixtures for the datasets tests: tiny source trees built in tmp_path, and the shared reference data."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

#: Reference data next to the checkout (read-only); tests using it are marked ``shared``.
SHARED = Path(os.environ.get("RAY_BENCH_SHARED", Path(__file__).resolve().parents[3] / "shared"))
PTBB = SHARED / "datasets" / "ptbb"
IAT_CSV = SHARED / "datasets" / "sources" / "iat_stimuli.csv"

KIND_OF = {
    "BBQ": "closed", "BiasLens-Choices": "closed", "SocialStigmaQA": "closed", "StereoSet-Intersentence": "closed",
    "CEB-Recognition-S": "closed", "CEB-Recognition-T": "closed", "CEB-Adult": "closed", "CEB-Credit": "closed",
    "CEB-Jigsaw": "closed", "IAT": "closed", "BiasLens-GenWhy": "open", "CEB-Continuation-S": "open",
    "CEB-Continuation-T": "open", "CEB-Conversation-S": "open", "CEB-Conversation-T": "open",
    "FMT10K-IM-S": "open", "FMT10K-IM-T": "open",
}


def write_source_file(root: Path, subset: str, axis: str, content: Any) -> Path:
    """Write ``<root>/<kind>_datasets/<subset>/<axis>.json``; str content is written verbatim."""
    path = root / f"{KIND_OF[subset]}_datasets" / subset / f"{axis}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads never touch the user's real cache."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("RAY_BENCH_CACHE", str(cache))
    return cache


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """An empty source directory in the repackaged layout."""
    root = tmp_path / "src"
    root.mkdir()
    return root


@pytest.fixture
def prepare_rows(tmp_path: Path) -> Callable[..., list[dict]]:
    """Write rows as one source file, prepare that dataset, return the prepared rows as dicts."""
    from ray_bench.datasets import prepare, read_questions

    def run(subset: str, axis: str, rows: list[dict]) -> list[dict]:
        root = tmp_path / f"src-{subset}-{axis}"
        write_source_file(root, subset, axis, rows)
        out = tmp_path / f"out-{subset}-{axis}"
        prepare(root, out, [subset], log=lambda _: None)
        return read_questions(out, subset).to_pylist()

    return run


@pytest.fixture
def write_source() -> Callable[[Path, str, str, Any], Path]:
    """:func:`write_source_file` as a fixture (test modules never import conftest by name)."""
    return write_source_file


@pytest.fixture(scope="session")
def shared_ptbb() -> Path:
    """The reference repackaged datasets; skips when the shared data is not mounted."""
    if not PTBB.is_dir():
        pytest.skip(f"shared reference data not found at {PTBB}")
    return PTBB


@pytest.fixture(scope="session")
def shared_iat_csv() -> Path:
    """The reference IAT stimuli CSV; skips when absent."""
    if not IAT_CSV.is_file():
        pytest.skip(f"shared IAT stimuli not found at {IAT_CSV}")
    return IAT_CSV
