"""The analysis benchmark on a small synthetic study: shape, pairing, end to end, and the
pandas flip table against ours and against an independent NumPy count (smoke, not timing)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from ray_bench.bench.analysis import (
    BBQ_AMBIG,
    STUDY_QUESTIONS,
    build_study,
    model_names,
    run_benchmark,
    study_subsets,
)

pytest.importorskip("pandas")

SCALE = 0.01
CHOICES = {
    "CEB-Recognition-S": 2, "CEB-Recognition-T": 2, "CEB-Jigsaw": 2, "CEB-Adult": 2, "CEB-Credit": 2,
    "BiasLens-Choices": 3, "SocialStigmaQA": 3, "BBQ": 3, "IAT": 4, "StereoSet-Intersentence": 3,
}


def test_full_study_inventory_without_building() -> None:
    subsets = {s.name: s for s in study_subsets(1.0)}
    assert sum(s.questions for s in subsets.values()) == STUDY_QUESTIONS == 85823
    assert len(subsets) == 17
    assert subsets["BBQ"].questions == sum(BBQ_AMBIG.values()) == 29238
    assert {n: s.questions for n, s in subsets.items() if n in ("BiasLens-Choices", "IAT", "StereoSet-Intersentence",
                                                                "SocialStigmaQA")} == {
        "BiasLens-Choices": 10917, "IAT": 13858, "StereoSet-Intersentence": 2123, "SocialStigmaQA": 10360}
    assert {n: s.num_choices for n, s in subsets.items() if s.kind == "closed"} == CHOICES
    assert sum(s.questions for s in subsets.values() if s.kind == "open") == 14227
    names = model_names()
    assert len(names) == 60 and sum(b is None for _, b, _ in names) == 10


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, float]:
    work = tmp_path_factory.mktemp("analysis-bench")
    started = time.perf_counter()
    result = run_benchmark(rounds=1, scale=SCALE, permutations=50, work_dir=work, profile=False)
    return result, work, time.perf_counter() - started


def test_study_files_follow_the_schemas_and_pair_by_card(bench) -> None:
    from ray_bench.report.analyze import pair_models
    from ray_bench.results import scan_run
    from ray_bench.schema import question_schema, result_schema

    _, work, _ = bench
    results = work / "results"
    manifest = json.loads((results / "manifest.json").read_text())
    assert len(manifest["shards"]) == 60 * 17
    some = next(iter(manifest["shards"]))
    assert pq.read_schema(results / f"{some}.parquet").remove_metadata().equals(result_schema().remove_metadata())
    assert pq.read_schema(work / "data" / "BBQ.parquet").remove_metadata().equals(question_schema().remove_metadata())
    run = scan_run(results)  # data dir from the manifest's runs[0].config.data_dir
    models, warnings = pair_models(run)
    assert warnings == []
    assert models.group_by("role").len().sort("role").rows() == [("base", 10), ("variant", 50)]
    assert set(models.filter(pl.col("role") == "variant")["pair_source"]) == {"card"}
    assert set(models["q_label"]) >= {"AWQ W4A16", "GPTQ W4A16", "RTN W4A16", "RTN W8A16", "RTN W4A16 + SQ"}
    rows = run.rows.collect()
    assert rows.height == 60 * sum(s.questions for s in study_subsets(SCALE))
    bbq = rows.filter(pl.col("subset") == "BBQ")
    assert set(bbq["context_condition"]) == {"ambig"}
    assert set(bbq["choice_labels"].list.sort().list.join(",")) == {"biased,unbiased,uncertain"}
    open_rows = rows.filter(pl.col("kind") == "open")
    words = open_rows["response"].str.split(" ").list.len()
    assert words.min() >= 4 and words.max() <= 14
    fmt = open_rows.filter(pl.col("dataset") == "FMT10K-IM")
    assert (fmt["responses"].list.len() == 5).all() and (fmt["responses"].list.last() == fmt["response"]).all()


def test_benchmark_runs_end_to_end_in_under_a_minute(bench) -> None:
    result, _, seconds = bench
    assert seconds < 60
    assert result["check"]["passed"], result["check"]
    assert result["check"]["counts_equal"] and result["check"]["max_abs_diff"] < 1e-9
    assert result["check"]["variants_compared"] == 50 and result["check"]["uncertainty_rows_compared"] == 30
    assert result["analyze_flips_equal_flips_step"]["equal"]
    for name in ("analyze", "flips", "pandas"):
        run = result["rounds"][0][name]
        assert run["seconds"] > 0 and run["peak_rss_bytes"] > 10 * 2**20
    assert set(result["targets"]) == {"flips_s", "analyze_s", "peak_rss_bytes", "speedup_vs_pandas"}
    assert result["rounds"][0]["analyze"]["tables"]["text_changes"] > 0


def _numpy_predictions(results: Path, model: str, subset: str) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(results / model / subset / "shard-00000.parquet", columns=["question_id", "choice_probs"])
    probs = table["choice_probs"].combine_chunks()
    k = len(probs[0])
    flat = probs.flatten().to_numpy().reshape(-1, k)
    return table["question_id"].to_numpy(zero_copy_only=False), flat


def test_flip_rate_by_hand_from_the_shard_files(bench) -> None:
    _, work, _ = bench
    results = work / "results"
    variant, base, subset = "qwen2.5-7b-instruct-rtn-w4a16", "qwen2.5-7b-instruct", "BBQ"
    qb, pb = _numpy_predictions(results, base, subset)
    qv, pv = _numpy_predictions(results, variant, subset)
    assert (qb == qv).all()
    flipped = pb.argmax(axis=1) != pv.argmax(axis=1)
    h = -(np.where(pb > 0, pb * np.log2(pb), 0.0)).sum(axis=1) / np.log2(3)
    key = (pl.col("variant") == variant) & (pl.col("subset") == subset) & (pl.col("axis") == "(all)")
    for out in ("out-flips", "out-pandas"):
        row = pl.read_parquet(work / out / "flips.parquet").filter(key).row(0, named=True)
        assert row["n"] == len(qb)
        assert row["n_flipped"] == int(flipped.sum())
        assert row["flip_rate"] == pytest.approx(flipped.mean(), abs=1e-12)
        assert row["mean_entropy_base"] == pytest.approx(h.mean(), abs=1e-12)
    analyzed = pl.read_parquet(work / "out-analyze" / "flips.parquet").filter(key).row(0, named=True)
    assert analyzed["n_flipped"] == int(flipped.sum())


def test_synthetic_answers_spread_entropy_and_flip_a_realistic_share(bench) -> None:
    _, work, _ = bench
    unc = pl.read_parquet(work / "out-flips" / "uncertainty.parquet")
    # every closed dataset has questions in all three base-entropy bins, flips rise with entropy
    assert unc.group_by("subset").len()["len"].min() == 3
    by_bin = unc.group_by("entropy_bin").agg((pl.col("pct_flipped") * pl.col("n_rows")).sum() / pl.col("n_rows").sum())
    rate = dict(by_bin.rows())
    assert rate["low"] < rate["medium"] < rate["high"]
    flips = pl.read_parquet(work / "out-flips" / "flips.parquet").filter(pl.col("axis") == "(all)")
    per_variant = flips.group_by("variant").agg(pl.col("n_flipped").sum() / pl.col("n").sum())
    overall = per_variant.get_column(per_variant.columns[1])
    assert 0.02 < overall.min() and overall.max() < 0.3


def test_build_is_seeded(tmp_path: Path) -> None:
    a = build_study(tmp_path / "a", n_bases=1, variants_per_base=2, scale=0.002, seed=3)
    b = build_study(tmp_path / "b", n_bases=1, variants_per_base=2, scale=0.002, seed=3)
    key = "llama3.1-8b-instruct-gptq-w4a16/IAT/shard-00000.parquet"
    assert pq.read_table(a / key).equals(pq.read_table(b / key))
    with pytest.raises(ValueError, match="variants_per_base"):
        model_names(1, 9)


def test_cli_writes_json_and_prints_ratios(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ray_bench.cli.main import app

    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "analysis", "--rounds", "1", "--scale", "0.002", "--permutations", "20",
                                   "--no-profile", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "pandas flip table / ours flip+entropy" in res.output and "PASS" in res.output
    data = json.loads(out.read_text())
    assert data["check"]["passed"] and data["setup"]["scale"] == 0.002
