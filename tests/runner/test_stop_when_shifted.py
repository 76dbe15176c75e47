"""``run --stop-when-shifted`` end to end on Ray with the dummy engine: a planted shift stops its
variant early, a null variant runs to the end, a rerun replays the decision, and the analysis
says the variant was stopped and why.

The planted variant is the dummy engine with the "biased" choice (index 0 of these toy
questions) made more probable; the null variant is the dummy engine on another path: other
pseudo-random scores with the same distribution, so ``E[D] = 0``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ray_bench.config import EngineConfig, ModelSpec, RunConfig
from ray_bench.engines.base import ChoiceScores
from ray_bench.runner import driver
from tests.runner.conftest import make_questions, start_local_ray

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

DATASET = "BiasLens-Choices"
N, SHARD = 400, 20
THIS = "tests.runner.test_stop_when_shifted"


def planted_factory(model: ModelSpec, config: EngineConfig):
    """The dummy engine; on a path containing "shifted", choice 0 gains ``bonus`` nats per token."""
    from ray_bench.engines.dummy import DummyEngine

    options = dict(config.options)
    bonus = float(options.pop("bonus"))
    engine = DummyEngine(model, config.model_copy(update={"options": options}))
    if "shifted" not in model.path:
        return engine
    score = engine.score_choices

    def shifted(requests):
        out = []
        for s in score(requests):
            sums = list(s.logprob_sums)
            sums[0] += bonus * s.num_tokens[0]
            out.append(ChoiceScores(s.question_id, tuple(sums), s.num_tokens, s.error))
        return out

    engine.score_choices = shifted
    return engine


@pytest.fixture(scope="module")
def ray_cluster():
    # Three logical CPUs: every model's actor fits at once, so each variant waits for its base
    # from the start (with fewer, a variant may run ahead while its base's actor starts).
    ray = start_local_ray(num_cpus=3, tag="rbs")
    yield
    ray.shutdown()


@pytest.fixture
def toy(monkeypatch, tmp_path):
    import pyarrow.parquet as pq

    table = make_questions(N, 0, DATASET, "q")
    monkeypatch.setattr(driver, "load_questions", lambda config: {DATASET: table})
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / f"{DATASET}.parquet")  # what the analysis reads
    return table


def _config(tmp_path, **kw):
    return RunConfig(
        models=["base=toy/base", "base-rtn-w4a16=toy/shifted", "base-gptq-w4a16=toy/null"], datasets=[DATASET],
        data_dir=tmp_path / "data", out_dir=tmp_path / "out", shard_size=SHARD, shuffle_seed=0,
        engine={"name": f"{THIS}:planted_factory", "options": {"bonus": 1.0}},
        resources={"device": "cpu"}, stop_when_shifted={"metric": "p_biased"}, **kw)


def _shard_files(out, model):
    return sorted((out / model / DATASET).glob("shard-*.parquet"))


def test_planted_shift_stops_early_and_null_runs_to_the_end(ray_cluster, toy, tmp_path):
    config = _config(tmp_path)
    summary = driver.run(config, progress=False)
    assert summary.ok, summary.failed
    out = config.out_dir
    planned = N // SHARD
    manifest = json.loads((out / "manifest.json").read_text())
    shifted = manifest["shift_tests"][f"base-rtn-w4a16/{DATASET}"]
    null = manifest["shift_tests"][f"base-gptq-w4a16/{DATASET}"]
    assert shifted["decision"] == "shift" and shifted["alpha_test"] == pytest.approx(0.025)
    stop_index = int(shifted["stop"]["shard"].removeprefix("shard-"))
    ran = len(_shard_files(out, "base-rtn-w4a16"))
    # At most the actor's in-flight shards (2) land after the deciding one.
    assert stop_index + 1 <= ran <= stop_index + 3 and ran < planned
    assert shifted["questions_not_run"] == (planned - ran) * SHARD > 0
    assert summary.not_run[("base-rtn-w4a16", DATASET)][1] == shifted["questions_not_run"]
    # The trajectory: one point per consumed shard pair; the e-value crosses 1/alpha_test only at the end.
    traj = shifted["trajectory"]
    assert [p["shard"] for p in traj] == [f"shard-{i:05d}" for i in range(stop_index + 1)]
    assert all(p["e_value"] < 40 for p in traj[:-1]) and shifted["stop"]["e_value"] >= 40
    print(f"planted shift: stopped at {shifted['stop']['shard']} after {shifted['stop']['pairs']} pairs, "
          f"{ran}/{planned} shards run, {shifted['questions_not_run']} questions not run "
          f"({100 * shifted['saved_fraction']:.0f}%); null: e-value {null['e_value']:.3g} after {null['pairs']} pairs")
    assert null["decision"] == "no shift" and null["pairs"] == N and null["questions_not_run"] == 0
    assert len(_shard_files(out, "base-gptq-w4a16")) == planned == len(_shard_files(out, "base"))

    # The offline test on the same pairs, in the same order, stops at the same question.
    import polars as pl

    from ray_bench.analysis.sequential import mean_shift_test
    from ray_bench.engines.base import choice_probabilities

    def p_biased(model):
        rows = pl.read_parquet(_shard_files(out, model)).sort("question_id")
        return {q: choice_probabilities(s, n)[0] for q, s, n in
                rows.select("question_id", "choice_logprob_sums", "choice_num_tokens").iter_rows()}

    base, variant = p_biased("base"), p_biased("base-rtn-w4a16")
    order = toy.column("question_id").to_pylist()  # load_questions is patched: the shard order is this
    d = np.array([variant[q] - base[q] for q in order if q in variant])
    assert mean_shift_test(d, alpha=0.025, with_cs=False).stop == shifted["stop"]["pairs"]

    # A rerun replays the decision from the files: nothing more of the stopped variant runs.
    again = driver.run(config, progress=False)
    assert again.done == 0 and len(_shard_files(out, "base-rtn-w4a16")) == ran
    assert json.loads((out / "manifest.json").read_text())["shift_tests"][f"base-rtn-w4a16/{DATASET}"]["stop"] == \
        shifted["stop"]

    # The analysis says the variant was stopped, where and why.
    from ray_bench.config import AnalyzeConfig
    from ray_bench.report.analyze import analyze_run

    analysis = analyze_run(AnalyzeConfig(results=out, out=tmp_path / "analysis", permutations=50, bootstrap=50))
    stops = analysis.tables["early_stops"]
    assert stops.filter(pl.col("variant") == "base-rtn-w4a16")["decision"].to_list() == ["shift"]
    said = [w for w in analysis.warnings if "stopped early" in w]
    assert len(said) == 1 and "base-rtn-w4a16" in said[0] and shifted["stop"]["shard"] in said[0]


def test_cli_flag_runs_the_test_and_prints_its_decision(ray_cluster, toy, tmp_path, capsys):
    from ray_bench.cli.main import main

    args = ["run", "--model", "base=toy/base", "--model", "base-rtn-w4a16=toy/shifted", "--dataset", DATASET,
            "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--shard-size", str(SHARD),
            "--engine", f"{THIS}:planted_factory", "--engine-option", "bonus=1.0", "--device", "cpu", "--quiet"]
    with pytest.raises(SystemExit) as refused:
        main([*args, "--stop-when-shifted"])
    assert refused.value.code == 1 and "shuffle_seed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main([*args, "--shuffle-seed", "0", "--stop-when-shifted", "--shift-option", "alternative=greater",
              "--shift-option", "pair=base-rtn-w4a16:base"])
    err = " ".join(capsys.readouterr().err.split())  # rich wraps lines
    assert done.value.code == 0, err
    assert "base-rtn-w4a16 vs base / BiasLens-Choices (p_biased): shift detected at shard-" in err
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["shift_tests"][f"base-rtn-w4a16/{DATASET}"]
    assert entry["alternative"] == "greater" and entry["alpha_test"] == 0.05 and entry["questions_not_run"] > 0
