"""The occupations prompt set end to end: `datasets occupations` -> `run` (Ray) -> `audit reference-gap`.

A stand-in engine answers each persona prompt with a seeded draw: the base from the reference
shares, the "quantized" variant from a stereotyped distribution, so the gap each should show
is known.
"""

import json
import random
import re

import polars as pl
import pytest

from ray_bench.cli.main import main
from ray_bench.engines.base import EngineInfo, Generation
from tests.runner.conftest import start_local_ray

pytestmark = pytest.mark.slow

THIS = "tests.cli.test_occupations_e2e"
SHARES = {"nurse": 0.6, "electrician": 0.3}  # share of women
TOY = {
    "schema_version": 1, "name": "toy-e2e", "version": "1", "title": "Toy", "year": 2024, "illustrative": True,
    "source": {"citation": "Made up for tests", "url": "https://example.org"},
    "attributes": [{"name": "gender", "label": "Gender", "categories": ["woman", "man"]}],
    "occupations": [{"name": o, "shares": {"gender": {"woman": w, "man": round(1 - w, 4)}}} for o, w in SHARES.items()],
}


class PersonaEngine:
    """Answers ``Imagine a(n) <occupation> ...`` with a persona line drawn with the request's seed."""

    def __init__(self, model, config):
        self.model, self.config = model, config

    def score_choices(self, requests):
        return []

    def generate(self, requests):
        out = []
        for req in requests:
            occupation = re.match(r"Imagine an? (.+?) in the United States", req.turns[0]).group(1)
            seed = req.decoding.request_seed(req.question_id, 0) if req.decoding else 0
            share = SHARES[occupation]
            if self.model.name != "base":  # the variant exaggerates the majority
                share = 1.0 if share >= 0.5 else 0.0
            woman = random.Random(seed).random() < share
            out.append(Generation(req.question_id, (f"A persona. Gender: {'woman' if woman else 'man'}",), 8))
        return out

    def info(self):
        return EngineInfo(engine="persona", model_path=self.model.path, dtype="none", device="cpu")

    def close(self):
        pass


def persona_factory(model, config):
    return PersonaEngine(model, config)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = start_local_ray(num_cpus=2, tag="occ")
    yield
    ray.shutdown()


def test_prompts_run_and_the_gap_comes_out(ray_cluster, tmp_path, capsys):
    table = tmp_path / "toy.json"
    table.write_text(json.dumps(TOY))
    data, runs, gap = tmp_path / "data", tmp_path / "runs", tmp_path / "gap"
    for argv in (
        ["datasets", "occupations", "--reference", str(table), "--out", str(data), "--samples", "60"],
        ["run", "--model", "base=toy/base", "--model", "base-rtn-w4a16=toy/q4", "--dataset", "Occupations",
         "--data", str(data), "--out", str(runs), "--engine", f"{THIS}:persona_factory", "--device", "cpu",
         "--temperature", "0.7", "--quiet"],
        ["audit", "reference-gap", "--results", str(runs), "--out", str(gap), "--format", "csv",
         "--bootstrap", "200", "--permutations", "500", "--floor-draws", "2000"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        captured = capsys.readouterr()
        assert info.value.code == 0, (argv[0], captured.err)
    summary = pl.read_csv(captured.out.encode())  # the audit's stdout
    base, variant = (summary.filter(pl.col("model") == m).row(0, named=True) for m in ("base", "base-rtn-w4a16"))
    assert base["n"] == variant["n"] == 120 and base["unknown_rate"] == 0.0
    assert variant["mean_tv"] == pytest.approx((0.4 + 0.3) / 2)  # all women / all men against 0.6 / 0.3
    assert base["mean_tv"] < 0.15  # sampling from the reference: near its noise floor
    gap_rows = pl.read_parquet(gap / "reference_gap.parquet")
    assert gap_rows.filter(pl.col("model") == "base")["n_distinct_responses"].to_list() == [2, 2]  # seeds differ
    total = pl.read_parquet(gap / "reference_gap_pairs.parquet").filter(pl.col("occupation") == "(all)").row(0, named=True)
    assert total["diff"] > 0.2 and total["ci_lo"] > 0 and total["p_value"] < 0.01

    # The usual pipeline picks the gap up too: analyze (the reference copied beside the prompts) and report.
    analysis, html = tmp_path / "analysis", tmp_path / "report.html"
    for argv in (["analyze", "--results", str(runs), "--out", str(analysis), "--permutations", "200",
                  "--bootstrap", "200"],
                 ["report", "--analysis", str(analysis), "--out", str(html)]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        captured = capsys.readouterr()
        assert info.value.code == 0, (argv[0], captured.err)
    analyzed = pl.read_parquet(analysis / "reference_gap_summary.parquet")
    assert set(analyzed["model"].to_list()) == {"base", "base-rtn-w4a16"}
    page = html.read_text()
    assert "Gap to the reference distribution" in page and "figR1_reference_tv" in page
