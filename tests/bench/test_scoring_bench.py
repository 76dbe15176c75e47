"""The scoring benchmark's library code and CLI, on a tiny model (smoke, not timing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ray_bench.bench.approaches import Tokenized
from ray_bench.bench.flops import FlopModel, packed_flops, separate_sequence_flops
from ray_bench.bench.models import PRESETS, ModelShape, resolve_shape
from ray_bench.bench.questions import synthetic_questions
from ray_bench.errors import UnknownNameError

TINY = ModelShape(hidden=64, layers=2, vocab=2048, intermediate=128, heads=4, kv_heads=2, max_positions=1024)


def test_synthetic_questions_are_seeded_and_shaped() -> None:
    a, b = synthetic_questions(20, seed=3), synthetic_questions(20, seed=3)
    assert a == b and a != synthetic_questions(20, seed=4)
    assert all(len(q.choices) == 3 and all(q.choices) for q in a)
    assert len({q.question_id for q in a}) == 20


def test_presets_and_overrides() -> None:
    assert resolve_shape(None).hidden == 256 and resolve_shape(None).layers == 8
    assert resolve_shape(None, hidden=512, vocab=None).hidden == 512
    q7 = resolve_shape("qwen2.5-7b")
    assert (q7.arch, q7.hidden, q7.layers, q7.vocab) == ("qwen2", 3584, 28, 152064)
    assert set(PRESETS) >= {"qwen2.5-1.5b", "qwen2.5-7b"}
    with pytest.raises(UnknownNameError, match="qwen2.5-7b"):
        resolve_shape("qwen2.5-7")


def test_flop_counts_by_hand() -> None:
    fm = FlopModel(layer_params=10, hidden=2, vocab=5, layers=1, attn_width=1)
    q = [Tokenized([1, 2, 3], [[4], [5, 6]])]
    # Separate sequences of 4 and 5 tokens: full logits, causal pairs 10 and 15.
    assert separate_sequence_flops(fm, q) == 20 * 9 + 4 * 25 + 20 * 9
    # Packed: 6 tokens; pairs 6 (prompt) + 1*3+1 + 2*3+3; logit rows 1 + 0 + 1.
    assert packed_flops(fm, q) == 20 * 6 + 4 * (6 + 4 + 9) + 20 * 2


def test_benchmark_runs_end_to_end_and_is_exact() -> None:
    pytest.importorskip("torch")
    from ray_bench.bench.scoring import ScoringBenchOptions, run_scoring_benchmark

    lines: list[str] = []
    report = run_scoring_benchmark(
        ScoringBenchOptions(shape=TINY, questions=8, max_batch_tokens=512, device="cpu"), log=lines.append
    )
    assert report.passed
    assert report.exactness["max_abs_diff_engine_vs_reference"] < 1e-5
    assert report.exactness["max_abs_diff_no_sharing_vs_reference"] < 1e-5
    runs = report.runs
    assert set(runs) == {"reference", "naive-batched", "engine", "engine-no-sharing"}
    assert runs["engine"]["real_tokens_per_question"] < runs["reference"]["real_tokens_per_question"]
    # Synthetic questions share instructions and contexts: the tree computes fewer tokens.
    assert runs["engine"]["real_tokens_per_question"] < runs["engine-no-sharing"]["real_tokens_per_question"]
    assert runs["engine"]["model_gflop_per_question"] < runs["engine-no-sharing"]["model_gflop_per_question"]
    assert set(report.speedups) == {"c/a", "c/b", "d/a", "d/b", "c/d"}
    assert report.setup["system_prompt_tokens"] > 0 and 0 < report.setup["shared_prefix_fraction"] < 1
    assert runs["engine"]["logit_rows_per_question"] < runs["engine"]["real_tokens_per_question"]
    assert runs["reference"]["forwards"] == 24 and runs["engine"]["questions"] == 8
    assert report.peak_flops > 0 and all(r["mfu"] > 0 for r in runs.values())
    assert any("round" in line for line in lines)
    json.dumps(report.as_dict())


def test_cli_prints_table_and_writes_json(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from ray_bench.cli.main import app

    out = tmp_path / "bench.json"
    args = ["bench", "scoring", "--questions", "4", "--hidden", "64", "--layers", "2", "--vocab", "2048"]
    args += ["--intermediate", "128", "--reference-questions", "2", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "speedup c/a" in result.output and "speedup c/d" in result.output and "PASS" in result.output
    assert "system message" in result.output and "assumption" in result.output
    data = json.loads(out.read_text())
    assert data["setup"]["reference_questions"] == 2 and data["runs"]["engine"]["questions"] == 4
    assert data["exactness"]["passed"] is True


def test_cli_help_ends_with_examples() -> None:
    from typer.testing import CliRunner

    from ray_bench.cli.main import app

    result = CliRunner().invoke(app, ["bench", "scoring", "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.output and "qwen2.5-7b" in result.output


def test_cli_rejects_data_without_dataset(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ray_bench.cli.main import app
    from ray_bench.errors import ConfigError

    result = CliRunner().invoke(app, ["bench", "scoring", "--data", str(tmp_path)])
    assert isinstance(result.exception, ConfigError)


def test_prepared_dataset_questions(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from ray_bench.bench.questions import dataset_questions
    from ray_bench.datasets import prepare

    prepare("sample", tmp_path, names=["BBQ"], log=lambda *_: None)
    qs = dataset_questions(tmp_path, "BBQ", 5)
    assert 0 < len(qs) <= 5 and all(len(q.choices) >= 2 for q in qs)
