"""The demo end to end: tiny models, bundled sample, local Ray, HF engine, flip table."""

import json

import polars as pl
import pytest

from ray_bench.datasets import prepare, read_questions

pytestmark = pytest.mark.slow


def test_demo_runs_every_sample_question_through_both_models(tmp_path):
    from ray_bench.demo.pipeline import run_demo

    result = run_demo(tmp_path / "demo", progress=False)
    rows = pl.read_parquet(list((tmp_path / "demo" / "runs").glob("*/*/shard-*.parquet")))
    assert rows.get_column("error").null_count() == rows.height
    # Independent count of what should have run: every sample question, BBQ ambiguous only.
    prepared = prepare("sample", tmp_path / "ref", log=lambda *_: None)
    expected_closed = {}
    for d in prepared.prepared:
        table = read_questions(tmp_path / "ref", d.name).to_pylist()
        if d.name == "BBQ":
            table = [q for q in table if q["context_condition"] == "ambig"]
        n = sum(q["kind"] == "closed" for q in table)
        if n:
            expected_closed[d.name] = n
        ran = rows.filter((pl.col("subset") == d.name) & (pl.col("model") == "base")).height
        assert ran == len(table), d.name
    flips = {r["subset"]: r for r in result.flips.iter_rows(named=True)}
    assert {k: v["n_questions"] for k, v in flips.items()} == expected_closed
    for r in flips.values():
        shares = sum(r[f"{b}_share"] for b in ("low", "medium", "high"))
        assert shares == pytest.approx(1.0)
    open_rows = rows.filter(pl.col("kind") == "open")
    assert open_rows.height > 0 and open_rows.get_column("response").null_count() == 0
    manifest = json.loads((tmp_path / "demo" / "runs" / "manifest.json").read_text())
    assert set(manifest["models"]) == {"base", result.variant}
    assert manifest["runs"][0]["provenance"]["packages"]["torch"]
