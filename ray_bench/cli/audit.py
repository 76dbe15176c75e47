"""`ray-bench audit`: audits of a finished run: shift test (docs/audit.md), reference gap (docs/reference-gap.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ray_bench.cli.common import check_format, config_from, err_console, out_console, print_frame

app = typer.Typer(no_args_is_help=True, help="Audits of a finished run: the anytime-valid shift test (docs/audit.md), "
                                                "the gap to a reference distribution (docs/reference-gap.md).")

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


NOISE_FLOOR_EPILOG = (
    "Examples:\n\n"
    "  ray-bench audit noise-floor\n\n"
    "  ray-bench audit noise-floor --reference my-table.json --n 20 --n 50 --n 500 --per-occupation\n\n"
    "  ray-bench audit noise-floor --format csv > floor.csv"
)
REFERENCE_GAP_EPILOG = (
    "Examples:\n\n"
    "  ray-bench audit reference-gap --results runs/occ --out runs/occ/gap\n\n"
    "  ray-bench audit reference-gap --results runs/occ --pair q4=base --extractor pronouns --format csv\n\n"
    "  ray-bench audit reference-gap --config jobs/gap.yaml --seed 1"
)


@app.command("noise-floor", epilog=NOISE_FLOOR_EPILOG)
def noise_floor(
    reference: Annotated[str, typer.Option("--reference", help="Table file or shipped name.")] = "bls-cps-2022-table11",
    n: Annotated[Optional[list[int]], typer.Option("--n", help="Answers per occupation; repeatable (default: 50, 500).")] = None,
    draws: Annotated[int, typer.Option("--draws", help="Simulated samples per occupation and N.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulation.")] = 0,
    per_occupation: Annotated[bool, typer.Option("--per-occupation", help="One row per occupation, not per attribute.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="stdout format: table, csv or json.")] = "table",
) -> None:
    """The TV a model sampling exactly from the reference would show, at N answers per occupation.

    Simulates Multinomial(N, q) samples of every occupation's reference shares q and reports
    the mean and 95th percentile of TV(sample, q): a measured TV is a gap only above it
    (docs/reference-gap.md). stdout: per attribute and N, the mean over occupations of the
    mean floor and of its 95th percentile, the smallest and largest 95th percentile, and
    the normal approximation 0.5 sum sqrt(2 q (1 - q) / (pi N)).
    """
    from ray_bench.report.reference_audit import noise_floor_report

    check_format(fmt)
    table, per, summary = noise_floor_report(reference, n, draws=draws, seed=seed)
    print_frame(per if per_occupation else summary, fmt)
    label = " (illustrative, not measured data)" if table.illustrative else ""
    err_console.print(f"{table.name} {table.version}{label}: {len(table.occupations)} occupations, "
                      f"{draws:,} draws per occupation and N, seed {seed}", markup=False, highlight=False)


@app.command("reference-gap", epilog=REFERENCE_GAP_EPILOG)
def reference_gap(
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML with ReferenceGapConfig fields; flags override it.")] = None,
    results: Annotated[Optional[Path], typer.Option("--results", help="The --out directory of `ray-bench run`.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the tables here (Parquet + CSV).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Prepared questions (default: the run's).")] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", help="Table file or shipped name (default: the "
                                                     "dataset's Occupations.reference.json).")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="Pair every other model with this base.")] = None,
    pair: Annotated[Optional[list[str]], typer.Option("--pair", help="VARIANT=BASE; repeatable.")] = None,
    control: Annotated[Optional[list[str]], typer.Option("--control", help="CONTROL=BASE: the base re-run.")] = None,
    extractor: Annotated[Optional[str], typer.Option("--extractor", help="self_report or pronouns (default: self_report).")] = None,
    ci_method: Annotated[Optional[str], typer.Option("--ci-method", help="bootstrap or dirichlet (default: bootstrap).")] = None,
    bootstrap: Annotated[Optional[int], typer.Option("--bootstrap", help="Draws per CI (default: 1000).")] = None,
    permutations: Annotated[Optional[int], typer.Option("--permutations", help="Per paired test (default: 1000).")] = None,
    floor_draws: Annotated[Optional[int], typer.Option("--floor-draws", help="Noise-floor draws (default: 10000).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of every draw (default: 0).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="stdout format: table, csv or json.")] = "table",
) -> None:
    """Gap of each model's Occupations personas to the reference distribution, and its change per variant.

    Per model, attribute and occupation: TV (primary) with its CI, max deviation, JS, signed
    gaps, G-test and the noise floor at the observed N; per model and attribute: mean,
    employment-weighted and worst TV; per variant: the paired change of TV with bootstrap CI
    and permutation p-value, per occupation and over occupations. stdout: the per-model
    summary. With --out, all four tables and reference_gap.json are written.
    """
    from ray_bench.config import parse_assignments
    from ray_bench.report.reference_audit import ReferenceGapConfig, audit_reference_gap

    check_format(fmt)
    overrides = {
        "results": results, "out": out, "data": data, "reference": reference, "base": base,
        "pairs": parse_assignments(pair, "--pair"), "controls": parse_assignments(control, "--control"),
        "extractor": extractor, "ci_method": ci_method, "bootstrap": bootstrap, "permutations": permutations,
        "floor_draws": floor_draws, "seed": seed,
    }
    cfg = config_from(ReferenceGapConfig, config, overrides, "reference-gap")
    audit = audit_reference_gap(cfg)
    for warning in audit.warnings:
        err_console.print(f"[yellow]Warning:[/yellow] {warning}")
    summary = audit.tables["reference_gap_summary"].select(
        "model", "role", "q_label", "attribute", "n_occupations", "n", "unknown_rate", "mean_tv", "weighted_tv",
        "worst_tv", "worst_occupation", "mean_floor", "share_above_floor", "share_g_reject")
    print_frame(summary, fmt)
    where = f" to {audit.out_dir}" if audit.out_dir is not None else " (pass --out DIR to write them)"
    err_console.print(f"Reference {audit.reference.name} {audit.reference.version}; {len(audit.tables)} tables"
                      f"{where} in {audit.seconds:.1f} s", markup=False, highlight=False)
