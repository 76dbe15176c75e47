"""`ray-bench audit`: anytime-valid audits of a finished run (docs/audit.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ray_bench.cli.common import out_console

app = typer.Typer(no_args_is_help=True, help="Anytime-valid audits of a finished run (see docs/audit.md).")

SHIFT_EPILOG = (
    "Examples:\n\n"
    "  ray-bench audit shift --results runs/r1 --base base --variant base-rtn-w4a16 --metric p_biased\n\n"
    "  ray-bench audit shift --results runs/r1 --base base --variant q4 --metric bias_flip "
    "--alternative greater --epsilon 0.05 --json"
)


@app.command("shift", epilog=SHIFT_EPILOG)
def shift(
    results: Annotated[Path, typer.Option("--results", help="The --out directory of `ray-bench run`.")],
    base: Annotated[str, typer.Option("--base", help="Reference model (a).")],
    variant: Annotated[str, typer.Option("--variant", help="Compared model (b); D = variant - base.")],
    metric: Annotated[str, typer.Option("--metric", help="bias_flip, is_biased, p_biased or p_unsafe.")],
    alpha: Annotated[float, typer.Option("--alpha", help="Level: reject once the e-value reaches 1/alpha.")] = 0.05,
    epsilon: Annotated[float, typer.Option("--epsilon", help="Tolerance: H0 |mean D| <= epsilon (one-sided: mean <= / >=).")] = 0.0,
    alternative: Annotated[str, typer.Option("--alternative", help="two-sided, greater or less.")] = "two-sided",
    method: Annotated[str, typer.Option("--method", help="Bets: mixture (of constant bets) or ons.")] = "mixture",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random question order.")] = 0,
    data: Annotated[Optional[Path], typer.Option("--data", help="Prepared questions (default: the run's).")] = None,
    dataset: Annotated[Optional[list[str]], typer.Option("--dataset", help="Only this dataset or subset; repeatable.")] = None,
    judge: Annotated[Optional[str], typer.Option("--judge", help="Whose verdicts, when several judges judged the run.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Sequential paired test by betting of a mean shift between two models, question by question.

    The paired questions are tested in a seeded random order; the test stops at the first
    question where the e-value reaches 1/alpha (valid under optional stopping, Waudby-Smith &
    Ramdas 2023). Prints the decision, the questions needed, the e-value, the anytime p-value
    and the confidence sequence for the mean difference.
    """
    from ray_bench.report.audit import audit_shift

    audit = audit_shift(results, base, variant, metric, data=data, judge=judge, datasets=dataset, alpha=alpha,
                        epsilon=epsilon, alternative=alternative, method=method, seed=seed)
    if as_json:
        typer.echo(json.dumps(audit.to_dict(), indent=2))
        return
    r = audit.result
    null = {"two-sided": f"|mean D| <= {epsilon:g}", "greater": f"mean D <= {epsilon:g}",
            "less": f"mean D >= {-epsilon:g}"}[alternative]
    decision = f"[bold red]shift detected[/bold red] (H0 {null} rejected)" if r.reject else f"no shift detected (H0 {null} kept)"
    lo, hi = r.cs.final if r.cs else (float("nan"), float("nan"))
    stopped = f"after {r.stop} of {r.n} paired questions" if r.reject else f"all {r.n} paired questions used"
    out_console.print(f"{metric}: {variant} - {base} ({', '.join(audit.datasets)}; {r.method} bets, seed {seed})")
    out_console.print(f"  decision:      {decision} at alpha = {alpha:g}, {stopped}")
    out_console.print(f"  e-value:       {r.e_value:.4g}   anytime p-value: {r.p_value:.4g}")
    out_console.print(f"  mean D:        {r.mean:+.4f}   {100 * (1 - alpha):g}% confidence sequence: [{lo:+.4f}, {hi:+.4f}]")
