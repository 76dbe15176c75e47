"""Print the method x scheme table on a briefly trained tiny model (CPU, a few minutes).

Run it in the quantization environment::

    .venv-quant/bin/python -m ray_bench.quantize.matrix --work /tmp/qmatrix > table.md

For every method x scheme pair it makes the variant (calibrated on 64 generated
sentences), loads it back, scores the probe questions in fp32 and prints wall time and
the log-prob difference to the base model as a Markdown table on stdout. Refused pairs
are listed with the reason; failures are reported and do not stop the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ray_bench.errors import RayBenchError


def make_calibration_file(path: Path, n: int = 200, seed: int = 7) -> Path:
    """Write ``n`` generated sentences as JSONL (``{"text": ...}``) for local calibration."""
    from ray_bench.demo.tiny import default_corpus

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps({"text": t}) for t in default_corpus(n, seed=seed)) + "\n")
    return path


def run_matrix(base: Path, work: Path, *, samples: int = 64, via: str = "auto") -> list[dict]:
    """Make and score every method x scheme variant of ``base``; one row per pair."""
    from ray_bench.quantize import METHODS, SCHEMES, CalibrationConfig, quantize_model
    from ray_bench.quantize.card import read_card
    from ray_bench.quantize.scoring import compare_scores, probe_requests, score_checkpoint

    cal = CalibrationConfig(
        source=str(make_calibration_file(work / "calibration.jsonl")),
        num_samples=samples, max_seq_length=128, template="{text}",
    )
    requests = probe_requests()
    base_scores = score_checkpoint(str(base), requests, via=via)
    rows = []
    for method in METHODS.names():
        for scheme in SCHEMES.names():
            row: dict = {"method": method, "scheme": scheme}
            reason = METHODS.get(method).unsupported.get(scheme)
            if reason:
                rows.append({**row, "status": "refused", "note": reason})
                continue
            start = time.perf_counter()
            try:
                path = quantize_model(base, work / "variants", method, scheme, name="tiny",
                                      calibration=cal, overwrite=True)
                cmp = compare_scores(base_scores, score_checkpoint(str(path), requests, via=via))
            except (RayBenchError, RuntimeError, ValueError) as exc:
                rows.append({**row, "status": "failed", "note": f"{type(exc).__name__}: {exc}"[:200]})
                continue
            card = read_card(path) or {}
            rows.append({**row, "status": "ok", "wall_s": card.get("wall_time_s"), "total_s": time.perf_counter() - start,
                         "oneshot_s": card.get("oneshot_time_s"), "mean_abs": cmp.mean_abs_diff,
                         "rel": cmp.rel_diff, "agree": cmp.agreement})
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table of :func:`run_matrix` rows."""
    lines = [
        "| method | scheme | status | quantize wall s | oneshot s | mean abs d logprob | rel diff | top-1 agree |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['method']} | {r['scheme']} | {r['status']}: {r['note']} | | | | | |")
            continue
        lines.append(
            f"| {r['method']} | {r['scheme']} | ok | {r['wall_s']:.1f} | {r['oneshot_s']:.1f} | "
            f"{r['mean_abs']:.4f} | {r['rel']:.5f} | {r['agree']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ray-bench-qmatrix"), help="scratch directory")
    parser.add_argument("--base", type=Path, default=None, help="existing base model (default: train a tiny one)")
    parser.add_argument("--steps", type=int, default=150, help="training steps of the tiny model")
    parser.add_argument("--samples", type=int, default=64, help="calibration samples")
    parser.add_argument("--via", choices=["auto", "hf", "plain"], default="plain",
                        help="scoring path: plain transformers forward, or the HF engine")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on shared cores)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    base = args.base
    if base is None:
        from ray_bench.demo.train import train_tiny_model

        base = args.work / "tiny-trained"
        if not (base / "config.json").is_file():
            print(f"training tiny model ({args.steps} steps) in {base} ...", file=sys.stderr)
            train_tiny_model(base, steps=args.steps)
    rows = run_matrix(base, args.work, samples=args.samples, via=args.via)
    print(format_table(rows))
    return 0 if all(r["status"] != "failed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
