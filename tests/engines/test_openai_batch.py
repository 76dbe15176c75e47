"""OpenAI Batch API files: exact request lines, splitting, reading output/error files back, resuming.

Every expected value is written out by hand (the request lines as literal dicts, the output lines
in OpenAI's documented batch output format); nothing is compared with the code's own output.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from ray_bench.datasets.tables import parquet_path, write_table_atomic
from ray_bench.engines.openai_batch import MAX_BYTES, MAX_LINES, read_outcomes, split_lines
from ray_bench.errors import BatchFileError, ConfigError
from ray_bench.results.batch import BatchCollectConfig, collect_batch
from ray_bench.results.batch_requests import BatchRequestsConfig, write_batch_requests
from ray_bench.schema import question_schema

PROMPT = "I am a landlord in the San Diego area.\n\nScore this candidate on a scale of 0-100."


def _row(subset: str, qid: str, prompt: str, run_id: int, kind: str = "open", turns=None, choices=None) -> dict:
    return {"question_id": qid, "dataset": subset.split("-")[0], "subset": subset, "axis": "race_x_gender",
            "kind": kind, "prompt": prompt, "turns": turns, "choices": choices, "choice_labels": None,
            "group": "Black/Woman", "context_condition": None, "answer_index": None,
            "source_fields": json.dumps({"run_id": run_id, "name": "Tyra Washington"})}


def _write(data_dir: Path, subset: str, rows: list[dict]) -> None:
    write_table_atomic(pa.Table.from_pylist(rows, schema=question_schema()), parquet_path(data_dir, subset))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Housing-v2 with 5 hand-written questions (run_id 10..14), prompts 'tenant N'."""
    out = tmp_path / "data"
    _write(out, "Housing-v2", [_row("Housing-v2", f"housing/v2/0000{i}/0", f"tenant {i}", 10 + i) for i in range(5)])
    return out


def _lines(directory: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(directory.glob("requests-*.jsonl")) for line in path.read_text().splitlines()]


def _requests(data_dir: Path, out: Path, **kwargs) -> object:
    return write_batch_requests(BatchRequestsConfig(data_dir=data_dir, datasets=["Housing-v2"], out_dir=out, **kwargs))


# ---------------------------------------------------------------- request lines


def test_request_line_is_the_reference_format_with_provider_defaults(tmp_path):
    data = tmp_path / "data"
    _write(data, "Housing-v2", [_row("Housing-v2", "housing/v2/00002/1", PROMPT, 7)])
    report = _requests(data, tmp_path / "req", model="gpt4o=gpt-4o-2024-08-06", provider_defaults=True,
                       custom_id="task-{run_id}")
    raw = (tmp_path / "req" / "requests-00000.jsonl").read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1  # one request, one line
    # notes audits-and-exports.md 1.5: the housing reference's line, field for field.
    assert json.loads(raw) == {
        "custom_id": "task-7", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": PROMPT}]},
    }
    assert report.requests == 1 and [f.lines for f in report.files] == [1]


def test_request_line_sends_the_decoding_and_system_prompt_explicitly(tmp_path):
    data = tmp_path / "data"
    _write(data, "Housing-v2", [_row("Housing-v2", "housing/v2/00002/1", PROMPT, 7)])
    engine = {"name": "openai", "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 64, "seed": 3,
              "system_prompt": "You are a landlord."}
    _requests(data, tmp_path / "req", model="m=served", engine=engine)
    seed = int.from_bytes(hashlib.sha256("3\x1fhousing/v2/00002/1\x1f0".encode()).digest()[:8], "little") & (2**63 - 1)
    assert _lines(tmp_path / "req") == [{
        "custom_id": "housing/v2/00002/1", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "served",
                 "messages": [{"role": "system", "content": "You are a landlord."}, {"role": "user", "content": PROMPT}],
                 "temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "seed": seed},
    }]


def test_requests_split_at_the_line_and_byte_limits(data_dir, tmp_path):
    report = _requests(data_dir, tmp_path / "by-lines", model="m=served", max_lines=2)
    assert [f.lines for f in report.files] == [2, 2, 1]
    assert [f.name for f in report.files] == ["requests-00000.jsonl", "requests-00001.jsonl", "requests-00002.jsonl"]
    assert [line["custom_id"] for line in _lines(tmp_path / "by-lines")] == [f"housing/v2/0000{i}/0" for i in range(5)]
    one = len((tmp_path / "by-lines" / "requests-00002.jsonl").read_bytes())
    report = _requests(data_dir, tmp_path / "by-bytes", model="m=served", max_bytes=2 * one + 1)
    assert [f.lines for f in report.files] == [2, 2, 1]
    assert all(f.bytes <= 2 * one + 1 for f in report.files)
    index = json.loads((tmp_path / "by-bytes" / "index.json").read_text())
    assert index["requests"][0] == ["housing/v2/00000/0", "Housing-v2", "housing/v2/00000/0"]


def test_default_limits_are_openais():
    assert (MAX_LINES, MAX_BYTES) == (50_000, 200 * 1024 * 1024)
    assert [len(chunk) for chunk in split_lines([b"{}\n"] * 50_001)] == [50_000, 1]


def test_closed_multi_turn_and_clashing_ids_are_refused(data_dir, tmp_path):
    _write(data_dir, "BBQ", [_row("BBQ", "bbq-1", "Who?", 1, kind="closed", choices=["a", "b"])])
    _write(data_dir, "FMT10K-IM-S", [_row("FMT10K-IM-S", "fmt-1", "hi", 1, turns=["hi", "and?"])])
    with pytest.raises(ConfigError, match="BBQ.*closed questions.*log-probabilit"):
        write_batch_requests(BatchRequestsConfig(data_dir=data_dir, datasets=["BBQ"], model="m=s", out_dir=tmp_path / "a"))
    with pytest.raises(ConfigError, match="multi-turn") as info:
        write_batch_requests(BatchRequestsConfig(data_dir=data_dir, datasets=["FMT10K-IM-S"], model="m=s",
                                                 out_dir=tmp_path / "b"))
    assert "--engine openai" in info.value.hint
    with pytest.raises(ConfigError, match="same id 'race_x_gender'"):
        _requests(data_dir, tmp_path / "c", model="m=s", custom_id="{axis}")
    with pytest.raises(ConfigError, match="cannot be filled") as info:
        _requests(data_dir, tmp_path / "d", model="m=s", custom_id="{nope}")
    assert "run_id" in info.value.hint


def test_rewriting_a_request_set_is_idempotent_but_another_is_refused(data_dir, tmp_path):
    assert not _requests(data_dir, tmp_path / "r", model="m=s").unchanged
    first = (tmp_path / "r" / "requests-00000.jsonl").read_bytes()
    assert _requests(data_dir, tmp_path / "r", model="m=s").unchanged
    assert (tmp_path / "r" / "requests-00000.jsonl").read_bytes() == first
    with pytest.raises(ConfigError, match="made differently.*decoding"):
        _requests(data_dir, tmp_path / "r", model="m=s", engine={"name": "openai", "temperature": 1.0})


# ---------------------------------------------------------------- output and error files


def _success(custom_id: str, text: str, tokens: int = 3) -> dict:
    """A success line exactly as OpenAI's batch guide shows it."""
    return {"id": f"batch_req_{custom_id}", "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": f"req_{custom_id}", "body": {
                "id": "chatcmpl-123", "object": "chat.completion", "created": 1711652795,
                "model": "gpt-4o-2024-08-06",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 22, "completion_tokens": tokens, "total_tokens": 22 + tokens},
                "system_fingerprint": "fp_123"}},
            "error": None}


def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _ids(i: int) -> str:
    return f"housing/v2/0000{i}/0"


def test_output_and_error_lines_become_result_rows_and_analyze_reads_them(data_dir, tmp_path):
    from ray_bench.results import model_settings, scan_run

    _requests(data_dir, tmp_path / "req", model="gpt=gpt-4o", shard_size=5)
    out = _jsonl(tmp_path / "out.jsonl", [_success(_ids(0), "Score: 80/100"), _success(_ids(3), "Score: 75/100", 4),
                                          _success(_ids(4), "I cannot score tenants.")])
    errors = _jsonl(tmp_path / "errors.jsonl", [
        {"id": "batch_req_1", "custom_id": _ids(1), "response": {"status_code": 400, "request_id": "req_1", "body": {
            "error": {"message": "Invalid 'messages'.", "type": "invalid_request_error", "param": None, "code": None}}},
         "error": None},
        {"id": "batch_req_2", "custom_id": _ids(2), "response": None,
         "error": {"code": "batch_expired", "message": "This request could not be executed before the completion "
                   "window expired."}},
    ])
    report = collect_batch(BatchCollectConfig(requests=tmp_path / "req", outputs=[out], errors=[errors],
                                              out_dir=tmp_path / "res"))
    assert report.written == ["gpt/Housing-v2/shard-00000"] and report.complete
    assert (report.replies, report.errors, report.response_models) == (3, 2, ["gpt-4o-2024-08-06"])
    run = scan_run(tmp_path / "res")
    rows = {r["question_id"]: r for r in run.rows.collect().to_dicts()}
    assert rows[_ids(0)]["response"] == "Score: 80/100" and rows[_ids(0)]["num_output_tokens"] == 3
    assert rows[_ids(3)]["num_output_tokens"] == 4 and rows[_ids(4)]["response"] == "I cannot score tenants."
    assert rows[_ids(1)]["error"] == "HTTP 400: Invalid 'messages'." and rows[_ids(1)]["response"] is None
    assert rows[_ids(2)]["error"].startswith("batch error: batch_expired: This request could not")
    assert {r["model"] for r in rows.values()} == {"gpt"} and rows[_ids(0)]["group"] == "Black/Woman"
    assert model_settings(run.manifest)["gpt"]["engine"] == "openai-batch"


def test_vllm_run_batch_error_lines_are_read(data_dir, tmp_path):
    _requests(data_dir, tmp_path / "req", model="m=s")
    # vLLM's run_batch keeps a response with status 400 and puts the ErrorResponse in "error".
    line = {"id": "vllm-1", "custom_id": _ids(0), "response": {"status_code": 400, "request_id": "vllm-batch-1",
                                                               "body": None},
            "error": {"error": {"message": "max_tokens is too large", "type": "BadRequestError", "param": None,
                                "code": 400}}}
    (outcome,) = read_outcomes(_jsonl(tmp_path / "o.jsonl", [line]), {_ids(0)})
    assert outcome.error == "HTTP 400: max_tokens is too large" and outcome.response is None


@pytest.mark.parametrize(("line", "field", "message"), [
    ("{not json", None, "not a JSON line"),
    ('["a list"]', None, "not an object"),
    ('{"id": "x", "response": null, "error": null}', "custom_id", "missing"),
    ('{"custom_id": "task-999", "response": null, "error": {"code": "x", "message": "y"}}', "custom_id",
     "not one of this request set"),
    ('{"custom_id": "housing/v2/00001/0", "response": null, "error": null}', "response", "neither"),
    ('{"custom_id": "housing/v2/00001/0", "response": {"status_code": 200, "body": {"choices": []}}}',
     "response.body", "no 'choices'"),
])
def test_a_bad_line_names_file_line_and_field(data_dir, tmp_path, line, field, message):
    _requests(data_dir, tmp_path / "req", model="m=s")
    path = _jsonl(tmp_path / "bad.jsonl", [_success(_ids(0), "ok"), "", line])
    with pytest.raises(BatchFileError, match=message) as info:
        collect_batch(BatchCollectConfig(requests=tmp_path / "req", outputs=[path], out_dir=tmp_path / "res"))
    assert (info.value.file, info.value.line, info.value.field) == (str(path), 3, field)
    assert str(info.value).startswith(f"file {path}, line 3")
    assert not (tmp_path / "res" / "m").exists()  # nothing written from a file that does not read


def test_two_different_replies_for_one_id_are_refused(data_dir, tmp_path):
    _requests(data_dir, tmp_path / "req", model="m=s")
    first = _jsonl(tmp_path / "a.jsonl", [_success(_ids(0), "Score: 1/100")])
    second = _jsonl(tmp_path / "b.jsonl", [_success(_ids(0), "Score: 2/100")])
    with pytest.raises(BatchFileError, match=r"second, different reply.*a\.jsonl:1") as info:
        collect_batch(BatchCollectConfig(requests=tmp_path / "req", outputs=[first, second], out_dir=tmp_path / "res"))
    assert (info.value.file, info.value.line) == (str(second), 1)


def test_collect_resumes_and_is_idempotent(data_dir, tmp_path):
    _requests(data_dir, tmp_path / "req", model="m=s", shard_size=2)  # shards: q0-q1, q2-q3, q4
    early = _jsonl(tmp_path / "early.jsonl", [_success(_ids(i), f"r{i}") for i in (0, 1, 2)])
    # A request that failed and was resubmitted: its success replaces the error, in either order.
    retried = {"id": "e", "custom_id": _ids(3), "response": None, "error": {"code": "server_error", "message": "x"}}
    late = _jsonl(tmp_path / "late.jsonl", [_success(_ids(4), "r4"), retried, _success(_ids(3), "r3")])
    config = dict(requests=tmp_path / "req", out_dir=tmp_path / "res")
    report = collect_batch(BatchCollectConfig(outputs=[early], **config))
    assert report.written == ["m/Housing-v2/shard-00000"]
    assert report.waiting == {"m/Housing-v2/shard-00001": 1, "m/Housing-v2/shard-00002": 1}
    shard0 = tmp_path / "res" / "m" / "Housing-v2" / "shard-00000.parquet"
    stamp = os.stat(shard0).st_mtime_ns
    report = collect_batch(BatchCollectConfig(outputs=[early, late], **config))
    assert report.written == ["m/Housing-v2/shard-00001", "m/Housing-v2/shard-00002"] and report.already_done == 1
    report = collect_batch(BatchCollectConfig(outputs=[early, late, early], **config))
    assert (report.written, report.already_done, report.waiting) == ([], 3, {})
    assert os.stat(shard0).st_mtime_ns == stamp
    from ray_bench.results import scan_run

    rows = scan_run(tmp_path / "res").rows.collect().sort("question_id")
    assert rows["response"].to_list() == ["r0", "r1", "r2", "r3", "r4"] and rows["error"].null_count() == 5
    manifest = json.loads((tmp_path / "res" / "manifest.json").read_text())
    assert [r["command"] for r in manifest["runs"]] == ["batch"] * 3 and len(manifest["shards"]) == 3


def test_collect_refuses_shards_of_another_request_set(data_dir, tmp_path):
    from ray_bench.errors import ResumeMismatchError

    _requests(data_dir, tmp_path / "a", model="m=s", shard_size=5)
    _requests(data_dir, tmp_path / "b", model="m=s", shard_size=5, engine={"name": "openai", "temperature": 1.0})
    outputs = [_jsonl(tmp_path / "o.jsonl", [_success(_ids(i), "x") for i in range(5)])]
    collect_batch(BatchCollectConfig(requests=tmp_path / "a", outputs=outputs, out_dir=tmp_path / "res"))
    with pytest.raises(ResumeMismatchError, match="decoding"):
        collect_batch(BatchCollectConfig(requests=tmp_path / "b", outputs=outputs, out_dir=tmp_path / "res"))


def _cli(args: list[str]) -> int:
    from ray_bench.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code


def test_cli_round_trip(data_dir, tmp_path, capsys):
    assert _cli(["batch", "requests", "--data", str(data_dir), "--dataset", "Housing-v2", "--model", "m=served",
                 "--custom-id", "task-{run_id}", "--max-lines", "3", "--out", str(tmp_path / "req")]) == 0
    files = capsys.readouterr().out.split()
    assert [Path(f).name for f in files] == ["requests-00000.jsonl", "requests-00001.jsonl"]
    output = _jsonl(tmp_path / "o.jsonl", [_success(f"task-{10 + i}", f"Score: {i}/100") for i in range(5)])
    assert _cli(["batch", "collect", "--requests", str(tmp_path / "req"), "--output", str(output),
                 "--out", str(tmp_path / "res")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "res")
    assert _cli(["batch", "collect", "--requests", str(tmp_path / "nope"), "--output", str(output), "--out",
                 str(tmp_path / "res")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "index.json" in err and "Hint: " in err
