"""The judge stage through Ray: overlap on two logical GPUs, sequential when they do not fit,
resumption, settings that may not mix, known verdicts end to end, and the tiny model."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_bench.config import JudgeConfig, RunConfig
from ray_bench.errors import ResumeMismatchError
from ray_bench.runner import driver
from ray_bench.schema import question_schema
from tests.runner.conftest import start_local_ray

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

SCRIPTED = "tests.stages.scripted:factory"
SINGLE, MULTI = "CEB-Continuation-S", "FMT10K-IM-S"


@pytest.fixture(scope="module")
def ray_cluster():
    ray = start_local_ray(num_cpus=4, num_gpus=2, tag="rbj")
    yield
    ray.shutdown()


def _open_questions(subset, n, turns=0):
    rows = [{
        "question_id": f"{subset}/{i}", "dataset": subset.rsplit("-", 1)[0], "subset": subset, "axis": "age",
        "kind": "open", "prompt": f"Tell a story {i}", "turns": [f"turn {t} of {i}" for t in range(turns)] or None,
        "choices": None, "choice_labels": None, "group": None, "context_condition": None, "answer_index": None,
        "source_fields": "{}",
    } for i in range(n)]
    return pa.Table.from_pylist(rows, schema=question_schema())


@pytest.fixture
def data_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(_open_questions(SINGLE, 10), data / f"{SINGLE}.parquet")
    pq.write_table(_open_questions(MULTI, 3, turns=5), data / f"{MULTI}.parquet")
    return data


def _config(tmp_path, data_dir, models, *, engine, judge_engine=None, judge=True, **kw):
    judge_opts = {"model": "guard=toy/guard", "engine": judge_engine or engine,
                  "resources": kw.pop("judge_resources", {"device": "cpu"})}
    return RunConfig(models=models, datasets=kw.pop("datasets", [SINGLE, MULTI]), data_dir=data_dir,
                     out_dir=tmp_path / "out", engine=engine, shard_size=kw.pop("shard_size", 4),
                     judge=judge_opts if judge else None, **kw)


def _shards(out):
    return json.loads((out / "manifest.json").read_text())["shards"]


def _spans(shards, stage):
    return [(e["started_at"], e["started_at"] + e["seconds"]) for e in shards.values() if e["stage"] == stage]


def test_judging_overlaps_answering_on_two_gpus_and_the_hook_sees_every_shard(ray_cluster, data_dir, tmp_path):
    landed = []
    config = _config(tmp_path, data_dir, ["base=toy/base"], datasets=[SINGLE], shard_size=2,
                     engine={"name": "dummy", "options": {"delay_s": 0.15}}, judge_engine={"name": "dummy"},
                     resources={"device": "gpu"}, judge_resources={"device": "gpu"})
    summary = driver.run(config, progress=False, on_shard=lambda stage, job, table: landed.append((stage, job.key)))
    assert summary.ok and summary.done_by_stage == {"answer": 5, "judge": 5}
    shards = _shards(config.out_dir)
    assert {k for s, k in landed} == set(shards) and len(landed) == 10
    answers, judgements = _spans(shards, "answer"), _spans(shards, "judge")
    assert min(start for start, _ in judgements) < max(end for _, end in answers)  # overlap
    progress = json.loads((config.out_dir / "manifest.json").read_text())["progress"]
    assert {k: (v["done"], v["total"]) for k, v in progress.items()} == {"base": (10, 10), "guard": (10, 10)}
    assert progress["base"]["questions_per_s"] > 0 and progress["base"]["eta_s"] == 0
    gpus = {e["stage"]: e["gpus"] for e in shards.values()}
    assert len(gpus["answer"]) == len(gpus["judge"]) == 1 and gpus["answer"] != gpus["judge"]


def test_judge_waits_for_the_gpus_the_answer_actors_need(ray_cluster, data_dir, tmp_path):
    # Each answer actor takes both logical GPUs: like one GPU, the judge must wait for them all
    # (starting it earlier would hold a GPU the second model's actor is waiting for).
    config = _config(tmp_path, data_dir, ["m0=toy/m0", "m1=toy/m1"], datasets=[SINGLE],
                     engine={"name": "dummy", "options": {"delay_s": 0.02}}, judge_engine={"name": "dummy"},
                     resources={"device": "gpu", "gpus_per_worker": 2}, judge_resources={"device": "gpu"})
    summary = driver.run(config, progress=False)
    assert summary.ok and summary.done_by_stage == {"answer": 6, "judge": 6}
    shards = _shards(config.out_dir)
    assert min(s for s, _ in _spans(shards, "judge")) >= max(e for _, e in _spans(shards, "answer"))
    for key, entry in shards.items():
        assert len(entry["gpus"]) == (2 if entry["stage"] == "answer" else 1), key


def test_judge_command_resumes_rejudges_new_answers_and_refuses_other_settings(ray_cluster, data_dir, tmp_path):
    engine = {"name": SCRIPTED, "options": {"unsafe": {"base": [f"{SINGLE}/1"]}}}
    run_config = _config(tmp_path, data_dir, ["base=toy/base"], engine=engine, judge=False,
                         resources={"device": "cpu"})
    assert driver.run(run_config, progress=False).done == 4  # 3 + 1 result shards, nothing judged
    judge_config = JudgeConfig(results=run_config.out_dir,
                               judge={"model": "guard=toy/guard", "engine": {"name": SCRIPTED},
                                      "resources": {"device": "cpu"}})
    first = driver.judge(judge_config, progress=False)
    assert (first.done, first.skipped) == (4, 0) and first.judged[("base", SINGLE)] == [10, 1, 0]
    judged = sorted(run_config.out_dir.glob("base/*/judge-guard/shard-*.parquet"))
    assert len(judged) == 4
    again = driver.judge(judge_config, progress=False)
    assert (again.done, again.skipped) == (0, 4)
    # A recomputed answer shard (new answers, same questions and config: e.g. sampled again) is
    # judged again, only it.
    path = run_config.out_dir / f"base/{SINGLE}/shard-00000.parquet"
    table = pq.read_table(path)
    responses = table.column("response").to_pylist()
    responses[0] = "UNSAFE text"
    pq.write_table(table.set_column(table.schema.get_field_index("response"), "response",
                                    pa.array(responses, pa.string())), path, write_page_checksum=True)
    third = driver.judge(judge_config, progress=False)
    assert (third.done, third.skipped) == (1, 3) and third.judged[("base", SINGLE)] == [4, 2, 0]
    other = judge_config.model_copy(update={"judge": judge_config.judge.model_copy(update={"judge_turns": "last"})})
    with pytest.raises(ResumeMismatchError, match="judge_turns"):
        driver.judge(other, progress=False)


def test_known_verdicts_give_known_safety_tables(ray_cluster, data_dir, tmp_path):
    from ray_bench.analysis.models import model_table
    from ray_bench.analysis.study import analyze_frames
    from ray_bench.results import model_settings, scan_run

    unsafe = {"base": [f"{SINGLE}/0"], "q": [f"{SINGLE}/{i}" for i in (1, 2, 3)]}
    garbage = {"q": [f"{SINGLE}/9"]}
    config = _config(tmp_path, data_dir, ["base=toy/base", "q=toy/q"], datasets=[SINGLE],
                     engine={"name": SCRIPTED, "options": {"unsafe": unsafe, "garbage": garbage}},
                     judge_engine={"name": SCRIPTED}, resources={"device": "cpu"})
    summary = driver.run(config, progress=False)
    assert summary.ok and summary.judged == {("base", SINGLE): [10, 1, 0], ("q", SINGLE): [10, 3, 1]}
    run = scan_run(config.out_dir)
    settings = model_settings(run.manifest)
    assert "guard" not in settings  # the judge is not an evaluated model
    tables = analyze_frames(run.rows, model_table(settings, {"q": ("base", "pair")}))
    safety = tables["safety"].filter(axis="(all)").sort("model")
    # base: 1 unsafe of 10 judged; q: 3 unsafe of 9 judged (one output is not a verdict).
    assert safety["n_judged"].to_list() == [10, 9] and safety["n_unsafe"].to_list() == [1, 3]
    assert safety["unsafe_rate"].to_list() == pytest.approx([0.1, 1 / 3])
    flips = tables["safety_flips"].filter(axis="(all)").row(0, named=True)
    # Paired over the 9 questions both judged: q1-q3 safe -> unsafe, q0 unsafe -> safe.
    assert (flips["n"], flips["n_safe_to_unsafe"], flips["n_unsafe_to_safe"]) == (9, 3, 1)
    # p_unsafe is 0.9 for an unsafe answer, 0.2 otherwise; over the same 9 pairs.
    assert flips["n_p_unsafe"] == 9 and flips["mean_p_unsafe_change"] == pytest.approx((3 * 0.7 - 0.7) / 9)


def test_tiny_model_answers_and_judges_end_to_end_and_resumes(ray_cluster, tmp_path, data_dir):
    pytest.importorskip("transformers")
    from ray_bench.demo.tiny import build_tiny_judge, build_tiny_model, build_tokenizer

    tok = build_tokenizer(tmp_path / "tok")
    model = build_tiny_model(tmp_path / "model", tokenizer_dir=tok)
    guard = build_tiny_judge(tmp_path / "guard", tokenizer_dir=tok)
    hf = {"name": "hf", "device": "cpu", "dtype": "float32", "max_new_tokens": 3}
    config = RunConfig(models=[f"tiny={model}"], datasets=[SINGLE, MULTI], data_dir=data_dir,
                       out_dir=tmp_path / "out", engine=hf, shard_size=5, limit=5,
                       judge={"model": f"guard={guard}", "engine": {**hf, "max_new_tokens": 5},
                              "resources": {"device": "cpu"}})
    summary = driver.run(config, progress=False)
    assert summary.ok and summary.done_by_stage == {"answer": 2, "judge": 2}
    rows = pq.read_table(config.out_dir / f"tiny/{SINGLE}/judge-guard/shard-00000.parquet").to_pylist()
    assert len(rows) == 5
    for row in rows:  # a random model's verdicts: garbage, kept raw and flagged, p_unsafe still measured
        assert row["judge_error"] and row["judge_output"] is not None and row["is_safe"] is None
        assert 0 < row["p_unsafe"] < 1
    answers = pq.read_table(config.out_dir / f"tiny/{SINGLE}/shard-00000.parquet")
    assert json.loads(answers.schema.metadata[b"ray_bench.decoding"])["max_new_tokens"] == 3
    manifest = json.loads((config.out_dir / "manifest.json").read_text())
    assert manifest["judges"]["guard"]["settings"]["path"] == str(guard)
    assert manifest["judges"]["guard"]["engine"]["engine"] == "hf"
    again = driver.run(config, progress=False)
    assert (again.done, again.skipped) == (0, 4)
