"""The demo end to end: tiny models, bundled sample, local Ray, HF engine, analysis, report."""

import json
import math

import polars as pl
import pytest

from ray_bench.datasets import prepare, read_questions

pytestmark = pytest.mark.slow


def _entropy(probs):
    h = -sum(p * math.log2(p) for p in probs if p > 0)
    return h / math.log2(len(probs))


def test_demo_runs_every_question_spreads_entropy_and_ends_with_the_report(tmp_path):
    from ray_bench.demo.pipeline import run_demo

    result = run_demo(tmp_path / "demo", progress=False)
    runs = tmp_path / "demo" / "runs"
    rows = pl.read_parquet(list(runs.glob("*/*/shard-*.parquet")))
    assert rows.get_column("error").null_count() == rows.height
    # Independent count of what should have run: every sample question, BBQ ambiguous only.
    prepared = prepare("sample", tmp_path / "ref", log=lambda *_: None)
    expected_closed = 0
    for d in prepared.prepared:
        table = read_questions(tmp_path / "ref", d.name).to_pylist()
        if d.name == "BBQ":
            table = [q for q in table if q["context_condition"] == "ambig"]
        expected_closed += sum(q["kind"] == "closed" for q in table)
        ran = rows.filter((pl.col("subset") == d.name) & (pl.col("model") == "base")).height
        assert ran == len(table), d.name
    # The sharpened head puts the base's questions in all three bins (computed here from the shards).
    base = rows.filter((pl.col("model") == "base") & (pl.col("kind") == "closed"))
    entropies = [_entropy(p) for p in base["choice_probs"].to_list()]
    assert len(entropies) == expected_closed
    assert min(entropies) <= 1 / 3 and max(entropies) > 2 / 3 and any(1 / 3 < h <= 2 / 3 for h in entropies)
    flips = result.tables["flips"].filter((pl.col("axis") == "(all)") & (pl.col("role") == "variant"))
    assert flips["n_flipped"].sum() > 0 and set(flips["variant"]) == set(result.variants)
    html = result.report.read_text()
    assert html.count('src="data:image/svg+xml;base64,') >= 10 and "src=\"http" not in html
    # The housing slice ran for every model and has its section: the refusal figure and the tables.
    from ray_bench.demo.housing import SLICE_SIZE

    housing = rows.filter(pl.col("subset") == "Housing-v2").group_by("model").len()
    assert dict(housing.iter_rows()) == {m: SLICE_SIZE for m in ("base", "base-bf16", *result.variants)}
    overall = result.tables["housing_refusals"].filter(pl.col("factor") == "(all)")
    assert overall["n"].to_list() == [SLICE_SIZE] * 4
    for name in ("figH3_housing_refusals", "table-housing_refusals", "table-housing_tests", "table-housing_paired",
                 "table-housing_quant_gaps"):
        assert f'id="{name}"' in html, name
    manifest = json.loads((runs / "manifest.json").read_text())
    assert set(manifest["models"]) == {"base", "base-bf16", *result.variants}
    assert manifest["runs"][0]["provenance"]["packages"]["torch"]
