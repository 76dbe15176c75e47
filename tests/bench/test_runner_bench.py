"""The runner benchmark, tiny: structure, engine time, every question written by both approaches,
overhead from the measured walls (smoke, not timing: nothing asserts the overhead is small)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from ray_bench.bench.runner import DATASET, RunnerBenchOptions, run_runner_benchmark, synthetic_questions
from ray_bench.datasets import read_questions
from ray_bench.schema import question_schema

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

QUESTIONS, DELAY, SIZES = 200, 0.0005, (50, 200)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("runner-bench")
    opts = RunnerBenchOptions(questions=QUESTIONS, delay_s=DELAY, shard_sizes=SIZES, rounds=1, work_dir=work)
    return run_runner_benchmark(opts), work


def _rows(out_dir) -> tuple[int, set[str]]:
    files = sorted(out_dir.glob("*/*/shard-*.parquet"))
    tables = [pq.read_table(f) for f in files]
    ids = {qid for t in tables for qid in t.column("question_id").to_pylist()}
    return sum(t.num_rows for t in tables), ids


def test_synthetic_questions_are_prepared_bbq(bench) -> None:
    result, work = bench
    table = read_questions(work / "data", DATASET)  # the driver's reader: checks the schema
    assert table.num_rows == QUESTIONS and table.schema.equals(question_schema())
    assert set(table.column("kind").to_pylist()) == {"closed"}
    assert synthetic_questions(3).column("question_id").to_pylist() == ["bench/0", "bench/1", "bench/2"]


def test_structure_and_engine_time(bench) -> None:
    result, _ = bench
    assert result.engine_s == pytest.approx(QUESTIONS * DELAY)
    assert [s.shard_size for s in result.sizes] == list(SIZES)
    assert [s.shards for s in result.sizes] == [4, 1]
    assert result.ray_startup_s > 0 and result.cpu_count >= 1
    for size in result.sizes:
        assert size.engine_s == result.engine_s
        assert len(size.rounds) == 1 and size.rounds[0].round == 0 and size.rounds[0].first == "ray"
        ray_run = size.rounds[0].ray
        assert ray_run.actor_seconds is not None and ray_run.actor_seconds > 0
        assert ray_run.first_shard_after_s is not None
    assert result.target_passed is None  # shard size 1000 was not measured


def test_both_approaches_wrote_every_question(bench) -> None:
    result, _ = bench
    expected = {f"bench/{i}" for i in range(QUESTIONS)}
    for size in result.sizes:
        for timing in size.rounds:
            for run in (timing.ray, timing.in_process):
                rows, ids = _rows(run.out_dir)
                assert rows == QUESTIONS == run.rows and ids == expected
            shard_files = sorted(timing.ray.out_dir.glob("*/*/shard-*.parquet"))
            assert len(shard_files) == size.shards
            assert [p.name for p in shard_files] == [p.name for p in sorted(timing.in_process.out_dir.glob("*/*/*.parquet"))]
    assert result.all_processed


def test_overhead_comes_from_the_measured_walls(bench) -> None:
    result, _ = bench
    for size in result.sizes:
        ray_s = min(r.ray.seconds for r in size.rounds)
        inproc_s = min(r.in_process.seconds for r in size.rounds)
        assert size.ray_s == ray_s and size.in_process_s == inproc_s
        assert size.overhead == pytest.approx((ray_s - inproc_s) / inproc_s)
        assert size.overhead_of_engine == pytest.approx((ray_s - inproc_s) / (QUESTIONS * DELAY))
    data = json.loads(json.dumps(result.as_dict()))
    assert data["sizes"][0]["overhead"] == pytest.approx(result.sizes[0].overhead)
    assert data["all_processed"] is True and data["target_passed"] is None


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        RunnerBenchOptions(shard_sizes=())
    with pytest.raises(ValueError):
        RunnerBenchOptions(questions=0)


def test_cli_rejects_bad_shard_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    from ray_bench.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "runner", "--shard-sizes", "100,x"])
    assert exc.value.code == 1 and "--shard-sizes '100,x'" in capsys.readouterr().err


def test_cli_help_ends_with_examples() -> None:
    from typer.testing import CliRunner

    from ray_bench.cli.main import app

    out = CliRunner().invoke(app, ["bench", "runner", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "--delay-ms" in out.output
    assert out.output.rstrip().splitlines()[-1].strip() == "ray-bench bench runner --replicas 2 --work-dir /tmp/rb-runner"


def test_report_prints_every_shard_size(bench, capsys: pytest.CaptureFixture[str]) -> None:
    from ray_bench.cli import common
    from ray_bench.cli.bench_tables import print_runner_report

    result, _ = bench
    width = common.out_console.width
    common.out_console.width = 250
    try:
        print_runner_report(result)
    finally:
        common.out_console.width = width
    out = capsys.readouterr().out
    assert "overhead / engine" in out and "target: Ray overhead <= 10%" in out and "not measured" in out
    assert all(f"{size.overhead_of_engine * 100:+.1f}%" in out for size in result.sizes)
