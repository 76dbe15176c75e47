"""``ray-bench bench openai`` on its built-in stub: interleaved levels and rates that latency arithmetic allows."""

from __future__ import annotations

from ray_bench.bench.openai import OpenAIBenchOptions, run_openai_benchmark

LATENCY_S = 0.02


def test_levels_interleave_and_concurrency_overlaps_requests():
    log: list[str] = []
    options = OpenAIBenchOptions(requests=8, levels=(1, 4), rounds=2, stub_latency_s=LATENCY_S)
    result = run_openai_benchmark(options, log=log.append)
    assert [line.split(":")[0] for line in log] == ["round 1/2, concurrency 1", "round 1/2, concurrency 4",
                                                   "round 2/2, concurrency 4", "round 2/2, concurrency 1"]
    one, four = result.levels
    assert result.all_ok and (one.errors, four.errors) == (0, 0) and len(one.seconds) == 2
    # One request at a time cannot beat 1 / latency; four at a time overlap their waits.
    assert result.best_rate(one) <= 1 / LATENCY_S
    assert result.best_rate(four) > 2 * result.best_rate(one)
    assert result.ratio(one) == 1.0 and result.as_dict()["levels"][1]["concurrency"] == 4


def test_cli_help_ends_with_examples():
    from typer.testing import CliRunner

    from ray_bench.cli.main import app

    out = CliRunner().invoke(app, ["bench", "openai", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "ray-bench bench openai --base-url http://127.0.0.1:8000/v1" in out.output
