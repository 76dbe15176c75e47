"""``run --stop-when-shifted``: the anytime-valid shift test, fed shard by shard while the run goes on.

For every (variant, base, closed dataset) the run holds, the paired mean-shift test by betting
(:func:`ray_bench.analysis.sequential.mean_log_wealth`, Waudby-Smith & Ramdas 2023) reads
``D = variant - base`` (:mod:`ray_bench.analysis.shift`) of shard 0, 1, 2, ... of the dataset, in
shard order and, within a shard, in row order: the seeded random order of ``shuffle_seed``,
fixed before the run, so the test's sequence does not depend on which shard lands first. A shard
pair enters the test once both of its shards are on disk (landed now or in an earlier run).

When the e-value reaches ``m / alpha`` (Bonferroni over the ``m`` tests of the run: valid for
e-values under any dependence, Wang & Ramdas 2022), the variant's queued shards of that dataset
are dropped (Ville's inequality makes stopping there valid: optional stopping). Shards already
sent to an actor still land. The base keeps running: it is every variant's reference.

The manifest's ``shift_tests`` records, per ``<variant>/<dataset>``: the settings, the e-value
trajectory (one point per shard pair), the decision, the stopping shard and pair, and the
questions not run. Rerunning the same directory replays the test from the shard files, so a
resumed run decides at the same shard; a rerun without the option runs the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ray_bench.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa
    import polars as pl

    from ray_bench.config import RunConfig, ShiftStopConfig
    from ray_bench.stages.base import ShardJob


@dataclass
class ShiftTest:
    """The state of one (variant, dataset) test."""

    variant: str
    base: str
    dataset: str
    alpha: float  #: this test's level (the run's alpha over the number of tests)
    shards: list[str]  #: the dataset's shard names (``shard-NNNNN``), in test order
    sizes: list[int]  #: questions per shard
    d: list[np.ndarray] = field(default_factory=list)  #: per consumed shard pair, its differences
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    stop: dict[str, Any] | None = None

    @property
    def next_shard(self) -> str | None:
        """The next shard pair the test needs, ``None`` when it has consumed all or decided."""
        if self.stop is not None or len(self.d) >= len(self.shards):
            return None
        return self.shards[len(self.d)]

    def key(self) -> str:
        return f"{self.variant}/{self.dataset}"


class ShiftStopRule:
    """Drives the tests of one run (see the module docstring); no Ray, reads landed shard files."""

    def __init__(self, config: RunConfig, questions: dict[str, pa.Table], planned: list[ShardJob]) -> None:
        self.spec: ShiftStopConfig = config.stop_when_shifted  # type: ignore[assignment]
        self.out_dir = Path(config.out_dir)
        self.shuffle_seed = config.shuffle_seed
        self.questions = questions
        self.landed: set[str] = set()
        self.tests = self._make_tests(config, questions, planned)
        self._question_frames: dict[str, pl.LazyFrame] = {}  # per dataset, converted once

    # ------------------------------------------------------------------ setup
    def _make_tests(self, config: RunConfig, questions: dict[str, pa.Table], planned: list[ShardJob]) -> list[ShiftTest]:
        pairs = resolve_shift_pairs(config)
        closed = [name for name, t in questions.items() if "closed" in set(t.column("kind").to_pylist())]
        if not closed:
            raise ConfigError(
                f"--stop-when-shifted tests closed questions, and none of {', '.join(questions)} has any",
                hint="Add a closed dataset (e.g. --dataset BBQ), or drop --stop-when-shifted.",
            )
        shards: dict[tuple[str, str], list[ShardJob]] = {}
        for job in planned:
            shards.setdefault((job.model, job.dataset), []).append(job)
        specs = [(v, b, ds) for v, b in sorted(pairs.items()) for ds in closed]
        alpha = self.spec.alpha / len(specs)
        tests = []
        for variant, base, dataset in specs:
            jobs = sorted(shards.get((variant, dataset), []), key=lambda j: j.index)
            tests.append(ShiftTest(variant, base, dataset, alpha, [j.key.rsplit("/", 1)[1] for j in jobs],
                                   [j.size for j in jobs]))
        return tests

    def lockstep(self) -> dict[str, str]:
        """Variant -> base: the scheduler keeps each variant from running ahead of its base."""
        return {test.variant: test.base for test in self.tests}

    # ---------------------------------------------------------------- feeding
    def start(self, done_keys: set[str]) -> list[tuple[str, str]]:
        """Replay the tests over the shards already on disk; the (variant, dataset) pairs already decided."""
        self.landed |= set(done_keys)
        return [stopped for test in self.tests if (stopped := self._advance(test)) is not None]

    def after_shard(self, stage: str, job: ShardJob, table: pa.Table) -> list[tuple[str, str]]:
        """The scheduler's shard hook: feed the tests this shard completes; what to stop now."""
        if stage != "answer":
            return []
        self.landed.add(job.key)
        out = []
        for test in self.tests:
            if test.dataset == job.dataset and job.model in (test.variant, test.base):
                stopped = self._advance(test)
                if stopped is not None:
                    out.append(stopped)
        return out

    def _advance(self, test: ShiftTest) -> tuple[str, str] | None:
        """Consume every shard pair now on disk, in order; ``(variant, dataset)`` if the test decided now."""
        from ray_bench.analysis.sequential import mean_log_wealth

        while (shard := test.next_shard) is not None:
            keys = [f"{m}/{test.dataset}/{shard}" for m in (test.base, test.variant)]
            if not all(k in self.landed for k in keys):
                return None
            test.d.append(self._differences(test, *keys))
            d = np.concatenate(test.d)
            log_k = (mean_log_wealth(d, epsilon=self.spec.epsilon, alternative=self.spec.alternative,
                                     method=self.spec.method) if d.size else np.zeros(0))
            test.trajectory.append(_point(shard, d, log_k))
            crossed = np.flatnonzero(log_k >= math.log(1.0 / test.alpha) - 1e-12)
            if crossed.size:
                t = int(crossed[0]) + 1
                test.stop = {"shard": shard, "pairs": t, "e_value": float(np.exp(log_k[t - 1])),
                             "mean_d": float(d[:t].mean())}
                return test.variant, test.dataset
        return None

    def _differences(self, test: ShiftTest, base_key: str, variant_key: str) -> np.ndarray:
        import polars as pl

        from ray_bench.analysis.shift import metric_fields, paired_frame

        frames = [metric_fields(self._rows(test.dataset, key), self.spec.metric) for key in (base_key, variant_key)]
        pairs = paired_frame(frames[0], frames[1], self.spec.metric).collect()
        return pairs.get_column("d").cast(pl.Float64).to_numpy()

    def _rows(self, dataset: str, key: str) -> pl.LazyFrame:
        """A landed result shard joined with its questions' fields (as ``results.scan_run`` joins them)."""
        import polars as pl
        import pyarrow.parquet as pq

        from ray_bench.results import shard_path
        from ray_bench.results.reading import QUESTION_COLUMNS

        questions = self._question_frames.get(dataset)
        if questions is None:
            questions = pl.from_arrow(self.questions[dataset].select(list(QUESTION_COLUMNS))).lazy()
            self._question_frames[dataset] = questions
        results = pl.from_arrow(pq.read_table(shard_path(self.out_dir, key))).lazy()
        return results.join(questions, on=["subset", "question_id"], how="left", maintain_order="left")

    # ---------------------------------------------------------------- record
    def record(self) -> dict[str, dict[str, Any]]:
        """The manifest's ``shift_tests`` entries (see the module docstring)."""
        return {test.key(): self._entry(test) for test in self.tests}

    def _entry(self, test: ShiftTest) -> dict[str, Any]:
        spec = self.spec
        ran = {s for s in test.shards if f"{test.variant}/{test.dataset}/{s}" in self.landed}
        ran_q = sum(n for s, n in zip(test.shards, test.sizes) if s in ran)
        total_q = sum(test.sizes)
        if test.stop is not None:
            decision = "shift"
        elif test.next_shard is None:
            decision = "no shift"  # every shard pair consumed without reaching the threshold
        else:
            decision = "undecided"  # shards missing (failed, or the run was interrupted)
        last = test.trajectory[-1] if test.trajectory else {}
        return {
            "variant": test.variant, "base": test.base, "dataset": test.dataset, "metric": spec.metric,
            "alpha": spec.alpha, "alpha_test": test.alpha, "epsilon": spec.epsilon,
            "alternative": spec.alternative, "method": spec.method, "shuffle_seed": self.shuffle_seed,
            "decision": decision, "stop": test.stop, "pairs": last.get("pairs", 0),
            "e_value": last.get("e_value"), "p_value": last.get("p_value"),
            "planned_shards": len(test.shards), "planned_questions": total_q,
            "shards_run": len(ran), "questions_run": ran_q, "questions_not_run": total_q - ran_q,
            "saved_fraction": round((total_q - ran_q) / total_q, 4) if total_q else 0.0,
            "trajectory": test.trajectory,
        }


def _point(shard: str, d: np.ndarray, log_k: np.ndarray) -> dict[str, Any]:
    """One trajectory point: after the shard pair ``shard``, the test's pairs, e-value and p-value."""
    if not d.size:
        return {"shard": shard, "pairs": 0, "e_value": 1.0, "p_value": 1.0, "mean_d": None}
    return {"shard": shard, "pairs": int(d.size), "e_value": float(np.exp(log_k[-1])),
            "p_value": float(min(1.0, np.exp(-np.max(log_k)))), "mean_d": float(d.mean())}


def resolve_shift_pairs(config: RunConfig) -> dict[str, str]:
    """``variant -> base`` for the run's models, by the analysis' pairing rules.

    Raises:
        ConfigError: no model can be paired, or a named model is not in the run.
    """
    from ray_bench.analysis.models import resolve_pairs
    from ray_bench.errors import AnalysisError
    from ray_bench.quantize.card import read_card

    spec = config.stop_when_shifted
    settings = {m.name: {"path": m.path, "quantization_card": read_card(m.path)} for m in config.models}
    try:
        pairing = resolve_pairs(settings, pairs=spec.pairs, base=spec.base)
    except AnalysisError as exc:
        # The analysis' hint names analyze's --base / --pair; run takes them as shift options.
        raise ConfigError(f"--stop-when-shifted: {exc}",
                          hint="Name the base with --shift-option base=NAME, or pair each variant with "
                               "--shift-option pair=VARIANT:BASE.") from None
    return {variant: base for variant, (base, source) in pairing.items() if source != "control"}
