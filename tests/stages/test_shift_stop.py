"""The online shift test (``run --stop-when-shifted``) on hand-written result shards, without Ray.

Each model's ``p_biased`` per question is chosen here; the expected decision comes from the
plain differences of those numbers run through ``mean_shift_test`` (the offline test), not
from the rule's own path through the result rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ray_bench.analysis.sequential import mean_shift_test
from ray_bench.config import RunConfig, build_config
from ray_bench.errors import ConfigError
from ray_bench.results import shard_path, write_shard
from ray_bench.schema import result_schema
from ray_bench.stages.plan import plan_run
from ray_bench.stages.shift_stop import ShiftStopRule
from tests.runner.conftest import make_questions

DATASET = "BiasLens-Choices"  # p_biased = probability of the choice labelled "biased" (index 0 here)
N, SHARD = 120, 10


def _config(tmp_path, models, **spec):
    return RunConfig(models=models, datasets=[DATASET], data_dir=tmp_path / "data", out_dir=tmp_path / "out",
                     shard_size=SHARD, shuffle_seed=0, stop_when_shifted=spec)


def _rows(questions: pa.Table, model: str, p_biased: np.ndarray, start: int, stop: int) -> pa.Table:
    rows = []
    for i in range(start, stop):
        p = float(p_biased[i])
        probs = [p, (1 - p) / 2, (1 - p) / 2]
        rows.append({"question_id": questions["question_id"][i].as_py(), "model": model, "dataset": DATASET,
                     "subset": DATASET, "axis": "age", "kind": "closed", "choice_logprob_sums": list(np.log(probs)),
                     "choice_num_tokens": [1, 1, 1], "choice_probs": probs, "prediction": int(np.argmax(probs)),
                     "response": None, "responses": None, "num_output_tokens": None, "error": None})
    return pa.Table.from_pylist(rows, schema=result_schema())


def _land(config, questions, jobs, p_of):
    """Write each job's shard; return ``{key: (job, table)}``."""
    out = {}
    for job in jobs:
        table = _rows(questions, job.model, p_of[job.model], job.start, job.stop)
        write_shard(shard_path(config.out_dir, job.key), table, job.fingerprint)
        out[job.key] = (job, table)
    return out


@pytest.fixture
def setup(tmp_path):
    questions = make_questions(N, 0, DATASET, "q")
    rng = np.random.default_rng(7)
    base = rng.uniform(0.2, 0.8, N)
    p_of = {"base": base, "base-rtn-w4a16": np.clip(base + 0.15 + rng.normal(0, 0.1, N), 0.01, 0.99),
            "base-gptq-w4a16": np.clip(base + rng.normal(0, 0.1, N), 0.01, 0.99)}
    return questions, p_of


def _expected_stop(p_of, variant, alpha):
    d = p_of[variant] - p_of["base"]
    return mean_shift_test(d, alpha=alpha, with_cs=False).stop


def test_a_planted_shift_stops_at_the_shard_the_offline_test_decides(tmp_path, setup):
    questions, p_of = setup
    config = _config(tmp_path, ["base=toy/base", "base-rtn-w4a16=toy/q", "base-gptq-w4a16=toy/n"])
    planned = plan_run(config.models, {DATASET: questions}, SHARD)
    rule = ShiftStopRule(config, {DATASET: questions}, planned)
    assert {(t.variant, t.base) for t in rule.tests} == {("base-rtn-w4a16", "base"), ("base-gptq-w4a16", "base")}
    assert all(t.alpha == pytest.approx(0.025) for t in rule.tests)  # Bonferroni over the two tests
    landed = _land(config, questions, planned, p_of)
    # Land in a scrambled order: every variant shard before its base shard, base in reverse.
    order = [k for k in landed if not k.startswith("base/")] + sorted((k for k in landed if k.startswith("base/")),
                                                                       reverse=True)
    stops = {}
    for i, key in enumerate(order):
        for variant, dataset in rule.after_shard("answer", *landed[key]):
            stops[variant] = i
    want = _expected_stop(p_of, "base-rtn-w4a16", 0.025)
    assert want is not None and want < N  # the planted shift is detected before the end
    entry = rule.record()[f"base-rtn-w4a16/{DATASET}"]
    assert entry["decision"] == "shift" and entry["stop"]["pairs"] == want
    assert entry["stop"]["shard"] == f"shard-{(want - 1) // SHARD:05d}"
    # Base shards land last, from the end: the test can only move once base shard 0 is there,
    # and then consumes every pair up to the stopping one at once.
    assert stops == {"base-rtn-w4a16": len(order) - 1}
    null = rule.record()[f"base-gptq-w4a16/{DATASET}"]
    assert _expected_stop(p_of, "base-gptq-w4a16", 0.025) is None
    assert null["decision"] == "no shift" and null["pairs"] == N and null["questions_not_run"] == 0
    assert [pt["pairs"] for pt in null["trajectory"]] == list(range(SHARD, N + 1, SHARD))
    d = p_of["base-gptq-w4a16"] - p_of["base"]
    assert null["trajectory"][-1]["mean_d"] == pytest.approx(d.mean())


def test_the_decision_replays_from_disk_and_counts_what_was_not_run(tmp_path, setup):
    questions, p_of = setup
    config = _config(tmp_path, ["base=toy/base", "base-rtn-w4a16=toy/q"])
    planned = plan_run(config.models, {DATASET: questions}, SHARD)
    want = _expected_stop(p_of, "base-rtn-w4a16", 0.05)
    stop_shard = (want - 1) // SHARD
    ran = [j for j in planned if j.model == "base" or j.index <= stop_shard + 1]  # one more shard was in flight
    _land(config, questions, ran, p_of)
    rule = ShiftStopRule(config, {DATASET: questions}, planned)
    assert rule.start({j.key for j in ran}) == [("base-rtn-w4a16", DATASET)]
    entry = rule.record()[f"base-rtn-w4a16/{DATASET}"]
    assert entry["stop"]["pairs"] == want
    assert entry["shards_run"] == stop_shard + 2
    assert entry["questions_not_run"] == N - (stop_shard + 2) * SHARD
    assert entry["saved_fraction"] == pytest.approx(entry["questions_not_run"] / N, abs=1e-4)
    assert len(entry["trajectory"]) == stop_shard + 1  # nothing is consumed after the decision


def test_bias_flip_metric_and_explicit_pairs(tmp_path, setup):
    questions, p_of = setup
    config = _config(tmp_path, ["a=toy/a", "b=toy/b"], metric="bias_flip", pairs={"b": "a"}, alternative="greater")
    flips = {"a": p_of["base"], "b": 1 - p_of["base"]}
    planned = plan_run(config.models, {DATASET: questions}, SHARD)
    _land(config, questions, planned, flips)
    rule = ShiftStopRule(config, {DATASET: questions}, planned)
    rule.start({j.key for j in planned})
    # Naive flip indicator: is_biased = (argmax of the probs is the biased choice, index 0).
    def biased(p):
        return np.argmax(np.stack([p, (1 - p) / 2, (1 - p) / 2]), axis=0) == 0
    d = (biased(flips["a"]) != biased(flips["b"])).astype(float)
    assert 0 < d.sum() < N
    want = mean_shift_test(d, alpha=0.05, alternative="greater", with_cs=False)
    entry = rule.record()[f"b/{DATASET}"]
    assert entry["decision"] == ("shift" if want.reject else "no shift")
    assert entry["stop"]["pairs"] == want.stop


def test_refusals(tmp_path, setup):
    questions, _ = setup
    with pytest.raises(ConfigError, match="no model could be paired") as unpaired:
        ShiftStopRule(_config(tmp_path, ["a=toy/a", "b=toy/b"]), {DATASET: questions}, [])
    assert "--shift-option base=NAME" in unpaired.value.hint  # run's flags, not analyze's --base
    open_only = make_questions(0, 4, "CEB-Continuation-S", "o")
    with pytest.raises(ConfigError, match="closed questions"):
        ShiftStopRule(_config(tmp_path, ["a=toy/a", "b=toy/b"], base="a"), {"CEB-Continuation-S": open_only}, [])
    with pytest.raises(ConfigError, match="shuffle_seed"):
        build_config(RunConfig, {"models": ["a=toy/a"], "datasets": [DATASET], "data_dir": str(tmp_path / "d"),
                                 "out_dir": str(tmp_path / "o"), "stop_when_shifted": {}}, "run config")
