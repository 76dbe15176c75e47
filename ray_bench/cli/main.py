"""Entry point of the ``ray-bench`` command.

Commands mirror the stages: ``datasets`` -> ``quantize`` -> ``run`` -> ``judge`` -> ``analyze`` -> ``report``,
plus ``demo`` (the whole path on CPU) and ``bench`` (engine benchmarks).
"""

from __future__ import annotations

import sys

import typer

from ray_bench.cli import analyze as analyze_cmd
from ray_bench.cli import audit as audit_cmd
from ray_bench.cli import batch as batch_cmd
from ray_bench.cli import bench as bench_cmd
from ray_bench.cli import datasets as datasets_cmd
from ray_bench.cli import demo as demo_cmd
from ray_bench.cli import export as export_cmd
from ray_bench.cli import judge as judge_cmd
from ray_bench.cli import plan as plan_cmd
from ray_bench.cli import quantize as quantize_cmd
from ray_bench.cli import report as report_cmd
from ray_bench.cli import run as run_cmd
from ray_bench.cli.common import debug_enabled, print_error
from ray_bench.errors import RayBenchError

app = typer.Typer(
    name="ray-bench",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Measure social bias in LLMs and how post-training quantization changes it.",
    epilog=(
        "Examples:\n\n"
        "  ray-bench demo\n\n"
        "  ray-bench datasets prepare --source ../shared/datasets/ptbb --out data/\n\n"
        "  ray-bench run --model base=Qwen/Qwen2.5-0.5B-Instruct --dataset BBQ --data data/ --out runs/r1\n\n"
        "  ray-bench analyze --results runs/r1 --base base --out runs/r1/analysis\n\n"
        "  ray-bench report --analysis runs/r1/analysis --out runs/r1/report.html"
    ),
)
app.add_typer(datasets_cmd.app, name="datasets")
app.add_typer(bench_cmd.app, name="bench")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(batch_cmd.app, name="batch")
app.add_typer(export_cmd.app, name="export")
app.command("quantize", epilog=quantize_cmd.EPILOG)(quantize_cmd.quantize)
app.command("plan", epilog=plan_cmd.EPILOG)(plan_cmd.plan)
app.command("run", epilog=run_cmd.EPILOG)(run_cmd.run)
app.command("judge", epilog=judge_cmd.EPILOG)(judge_cmd.judge)
app.command("analyze", epilog=analyze_cmd.EPILOG)(analyze_cmd.analyze)
app.command("report", epilog=report_cmd.EPILOG)(report_cmd.report)
app.command("demo", epilog=demo_cmd.EPILOG)(demo_cmd.demo)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; known errors print ``Error:``/``Hint:`` and exit 1."""
    try:
        app(args=argv, standalone_mode=True)
    except RayBenchError as exc:
        if debug_enabled():
            raise
        print_error(exc, exc.hint)
        sys.exit(1)


if __name__ == "__main__":
    main()
