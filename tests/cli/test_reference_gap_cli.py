"""`ray-bench audit reference-gap` and `audit noise-floor` on a run written by hand (no Ray)."""

import json

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from ray_bench.cli.main import main
from ray_bench.datasets.occupations import REFERENCE_FILE, write_occupations
from ray_bench.datasets.reference import load_reference

TOY = {
    "schema_version": 1, "name": "toy", "version": "1", "title": "Toy", "year": 2024, "illustrative": True,
    "source": {"citation": "Made up for tests", "url": "https://example.org"},
    "attributes": [{"name": "gender", "label": "Gender", "categories": ["woman", "man"]}],
    "occupations": [{"name": "nurse", "shares": {"gender": {"woman": 0.9, "man": 0.1}}},
                    {"name": "electrician", "shares": {"gender": {"woman": 0.02, "man": 0.98}}}],
}


def write_occupations_run(root, answers, reference=None):
    """Prepare the toy prompts in ``root/data`` and write ``answers`` (model -> f(question) -> text) as a run."""
    import pyarrow as pa

    from ray_bench.datasets import read_questions
    from ray_bench.results import write_shard
    from ray_bench.schema import result_schema

    table = root / "toy.json"
    table.write_text(json.dumps(TOY))
    data, runs = root / "data", root / "runs"
    write_occupations(data, reference or table, samples=12)
    questions = read_questions(data, "Occupations").to_pylist()
    shards = {}
    for model, answer in answers.items():
        rows = [{"question_id": q["question_id"], "model": model, "dataset": q["dataset"], "subset": q["subset"],
                 "axis": q["axis"], "kind": q["kind"], "response": answer(q)} for q in questions]
        key = f"{model}/Occupations/shard-00000"
        write_shard(runs / f"{key}.parquet", pa.Table.from_pylist(rows, schema=result_schema()), "fp")
        shards[key] = {"status": "done", "questions": len(rows)}
    manifest = {
        "manifest_version": 1,
        "runs": [{"config": {"models": [{"name": n, "path": f"/models/{n}"} for n in answers], "data_dir": str(data),
                             "engine": {"name": "hf", "dtype": "float32", "temperature": 0.7}}}],
        "models": {n: {"path": f"/models/{n}", "quantization_card": None} for n in answers}, "shards": shards,
    }
    (runs / "manifest.json").write_text(json.dumps(manifest))
    return runs, data


def _sample(q):
    return int(q["question_id"].rsplit("/", 1)[1])


def _faithful(q):  # 11 of 12 nurses are women, 0 of 12 electricians
    woman = _sample(q) < 11 if q["group"] == "nurse" else False
    return f"Persona {_sample(q)}. Gender: {'woman' if woman else 'man'}"


def _stereotyped(q):
    return f"Gender: {'woman' if q['group'] == 'nurse' else 'man'}" if _sample(q) else "No idea."


def _run_cli(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_reference_gap_writes_tables_and_prints_the_summary(tmp_path, capsys):
    runs, _ = write_occupations_run(tmp_path, {"base": _faithful, "base-rtn-w4a16": _stereotyped})
    out = tmp_path / "gap"
    code, stdout, stderr = _run_cli(["audit", "reference-gap", "--results", str(runs), "--out", str(out), "--format",
                                     "csv", "--bootstrap", "50", "--permutations", "50", "--floor-draws", "500"], capsys)
    assert code == 0, stderr
    summary = pl.read_csv(stdout.encode())
    assert summary["model"].to_list() == ["base", "base-rtn-w4a16"]
    base = summary.row(0, named=True)
    assert base["mean_tv"] == pytest.approx((abs(11 / 12 - 0.9) + 0.02) / 2)
    assert base["unknown_rate"] == 0.0 and summary.row(1, named=True)["unknown_rate"] == pytest.approx(1 / 12)
    for name in ("reference_gap", "reference_gap_categories", "reference_gap_summary", "reference_gap_pairs"):
        assert (out / f"{name}.parquet").is_file() and (out / f"{name}.csv").is_file()
    meta = json.loads((out / "reference_gap.json").read_text())
    assert meta["reference"]["name"] == "toy" and meta["reference"]["digest"] == load_reference(
        tmp_path / "toy.json").digest()
    assert "is illustrative" in stderr and "toy 1; 4 tables to" in stderr
    pairs = pl.read_parquet(out / "reference_gap_pairs.parquet")
    assert pairs.filter(pl.col("occupation") == "(all)")["variant"].to_list() == ["base-rtn-w4a16"]


def test_reference_gap_of_a_single_model_and_without_a_reference(tmp_path, capsys):
    runs, data = write_occupations_run(tmp_path, {"solo": _faithful})
    code, stdout, _ = _run_cli(["audit", "reference-gap", "--results", str(runs), "--floor-draws", "100",
                                "--bootstrap", "20", "--format", "json"], capsys)
    assert code == 0 and [r["model"] for r in json.loads(stdout)] == ["solo"]
    (data / REFERENCE_FILE).unlink()
    code, _, stderr = _run_cli(["audit", "reference-gap", "--results", str(runs)], capsys)
    assert code == 1
    assert stderr.splitlines()[0] == f"Error: no reference table: {data / REFERENCE_FILE} does not exist"
    assert stderr.splitlines()[1].startswith("Hint: Pass --reference FILE_OR_NAME")


def test_noise_floor_of_the_shipped_table_matches_the_exact_binomial(capsys):
    code, stdout, stderr = _run_cli(["audit", "noise-floor", "--n", "50", "--n", "500", "--draws", "4000",
                                     "--format", "csv"], capsys)
    assert code == 0 and "20 occupations, 4,000 draws" in stderr
    summary = pl.read_csv(stdout.encode())
    assert summary.height == 6 and set(summary["attribute"]) == {"gender", "race", "ethnicity"}
    table = load_reference()
    x = np.arange(51)
    exact = np.mean([(sps.binom.pmf(x, 50, q) * np.abs(x / 50 - q)).sum() for q in table.shares("gender")[:, 0]])
    gender = summary.filter((pl.col("attribute") == "gender") & (pl.col("n") == 50)).row(0, named=True)
    assert gender["mean_floor"] == pytest.approx(exact, abs=0.002)
    code, _, stderr = _run_cli(["audit", "noise-floor", "--n", "0"], capsys)
    assert code == 1 and stderr.startswith("Error: --n must be at least 1")
