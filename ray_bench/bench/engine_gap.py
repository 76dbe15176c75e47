"""The engine-gap benchmark behind ``ray-bench bench engine-gap``.

Is a quantized variant's bias delta a property of the quantization or of the engine that
scored it? On a quantized set (:mod:`ray_bench.bench.quantized_set`) every checkpoint, the
base included, is scored on the same sample closed questions by three engines:

* ``hf`` - the HF engine, W8A8 activations quantized as vLLM's int8 kernels do
  (``activation_quant: kernel``, its default, scale absmax/127);
* ``hf-ct`` - the HF engine with transformers' own compressed-tensors fake quantization
  (``activation_quant: compressed-tensors``, scale absmax/127.5);
* ``vllm`` - the vLLM engine (its default scoring method).

Per (method, scheme, dtype) it reports the engine gap, max and mean |vLLM - HF| of the
choice log-prob sums, the same for ``hf-ct``, the quantization effect, max and mean
|HF(variant) - HF(base)| with the base in the same dtype, their ratios, and how often
vLLM and HF predict the same choice. Runs in the vLLM environment (the quantization
environment pins another compressed-tensors). The arithmetic is :func:`compare_scores`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_bench.engines.base import ChoiceScores, ScoreRequest
from ray_bench.errors import ConfigError

DEFAULT_DATASETS = ("BBQ", "CEB-Recognition-S")
DEFAULT_QUESTIONS = 100
#: Tried in this order per checkpoint: float32 where vLLM can run it, else bfloat16.
DTYPES = ("float32", "bfloat16")
#: The engines every checkpoint is scored with, as ``key -> (engine name, options)``.
ENGINE_RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "hf": ("hf", {}),
    "hf-ct": ("hf", {"activation_quant": "compressed-tensors"}),
    "vllm": ("vllm", {}),
}

#: Per dataset, the scores of each question in order.
Scores = dict[str, list[ChoiceScores]]


@dataclass(frozen=True)
class EngineGapOptions:
    """Inputs of one engine-gap run.

    Attributes:
        set_dir: A quantized set (``ray-bench bench quantized-set --out DIR``).
        datasets: Sample datasets whose closed questions are scored.
        questions: Questions per dataset (fewer when the data has fewer).
        data_dir: Prepared datasets (``ray-bench datasets prepare``); ``None`` prepares the
            bundled sample (a handful of questions per dataset).
    """

    set_dir: Path
    datasets: tuple[str, ...] = DEFAULT_DATASETS
    questions: int = DEFAULT_QUESTIONS
    data_dir: Path | None = None


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint to score, in the dtype it is scored in.

    Attributes:
        method: Quantization method, ``base`` for the unquantized base.
        scheme: Quantization scheme, ``-`` for the base.
        path: The checkpoint directory.
        dtype: ``float32`` or ``bfloat16``.
        note: Why it is not in float32 (empty when it is).
    """

    method: str
    scheme: str
    path: Path
    dtype: str
    note: str = ""


@dataclass
class _Plan:
    checkpoints: list[Checkpoint] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


# ----------------------------------------------------------------- arithmetic (pure)


def _usable(*runs: Sequence[ChoiceScores] | None) -> list[int]:
    """Indices of the questions every given run scored, after checking they line up."""
    present = [r for r in runs if r is not None]
    n = len(present[0])
    for run in present[1:]:
        if len(run) != n or any(a.question_id != b.question_id for a, b in zip(present[0], run)):
            raise ValueError("the score lists do not hold the same questions in the same order")
    return [i for i in range(n) if all(r[i].error is None for r in present)]


def _abs_diffs(a: Sequence[ChoiceScores], b: Sequence[ChoiceScores], keep: Sequence[int]) -> list[float]:
    out: list[float] = []
    for i in keep:
        if len(a[i].logprob_sums) != len(b[i].logprob_sums):
            raise ValueError(f"question {a[i].question_id!r} has different choice counts in the two runs")
        out.extend(abs(x - y) for x, y in zip(a[i].logprob_sums, b[i].logprob_sums))
    return out


def _stats(diffs: Sequence[float]) -> dict[str, float | None]:
    if not diffs:
        return {"max": None, "mean": None}
    return {"max": max(diffs), "mean": sum(diffs) / len(diffs)}


def _ratio(num: float | None, den: float | None) -> float | None:
    """``num / den``; ``None`` when either is missing or the denominator is 0 (no effect)."""
    if num is None or den is None or den == 0:
        return None
    return num / den


def _agreement(a: Sequence[ChoiceScores], b: Sequence[ChoiceScores], keep: Sequence[int]) -> float | None:
    if not keep:
        return None
    return sum(a[i].prediction == b[i].prediction for i in keep) / len(keep)


def compare_scores(
    hf: Sequence[ChoiceScores],
    hf_ct: Sequence[ChoiceScores],
    vllm: Sequence[ChoiceScores],
    hf_base: Sequence[ChoiceScores] | None = None,
    vllm_base: Sequence[ChoiceScores] | None = None,
) -> dict[str, Any]:
    """Engine gap, quantization effect and their ratios over every choice of every question.

    The runs hold the same questions in the same order; a question that failed in any
    of them is left out (``failed_questions``).

    Args:
        hf: The HF engine's scores of the checkpoint (kernel-matched activations).
        hf_ct: The HF engine's scores with compressed-tensors fake quantization.
        vllm: The vLLM engine's scores of the checkpoint.
        hf_base: The HF engine's scores of the base in the same dtype; ``None`` for the
            base itself (no effect to report).
        vllm_base: The vLLM engine's scores of that base (for ``vllm_effect``).

    Returns:
        ``engine_gap`` (|vLLM - HF|) and ``ct_gap`` (|vLLM - HF-ct|) as ``{max, mean}``;
        with a base also ``quant_effect`` (|HF - HF(base)|), ``vllm_effect``
        (|vLLM - vLLM(base)|), ``gap_over_effect`` and ``ct_gap_over_effect`` (max over
        max, mean over mean; ``None`` where the effect is 0); prediction agreements,
        question and choice counts, and whether all token counts matched.

    Raises:
        ValueError: the runs do not line up.
    """
    keep = _usable(hf, hf_ct, vllm, hf_base, vllm_base)
    gap = _stats(_abs_diffs(vllm, hf, keep))
    ct_gap = _stats(_abs_diffs(vllm, hf_ct, keep))
    out: dict[str, Any] = {
        "questions": len(keep),
        "choices": sum(len(hf[i].logprob_sums) for i in keep),
        "failed_questions": len(hf) - len(keep),
        "engine_gap": gap,
        "ct_gap": ct_gap,
        "prediction_agreement_vllm_hf": _agreement(vllm, hf, keep),
        "prediction_agreement_vllm_hf_ct": _agreement(vllm, hf_ct, keep),
        "token_counts_equal": all(hf[i].num_tokens == vllm[i].num_tokens == hf_ct[i].num_tokens for i in keep),
    }
    if hf_base is not None:
        effect = _stats(_abs_diffs(hf, hf_base, keep))
        out["quant_effect"] = effect
        if vllm_base is not None:
            out["vllm_effect"] = _stats(_abs_diffs(vllm, vllm_base, keep))
        out["gap_over_effect"] = {k: _ratio(gap[k], effect[k]) for k in ("max", "mean")}
        out["ct_gap_over_effect"] = {k: _ratio(ct_gap[k], effect[k]) for k in ("max", "mean")}
    return out


def compare_runs(runs: Mapping[str, Scores], base: Mapping[str, Scores] | None) -> dict[str, Any]:
    """:func:`compare_scores` over all datasets together, and per dataset (``by_dataset``).

    Args:
        runs: ``ENGINE_RUNS`` key -> the checkpoint's scores.
        base: The same for the base in the same dtype; ``None`` for the base itself.
    """

    def joined(scores: Mapping[str, Scores] | None, key: str, names: Sequence[str]) -> list[ChoiceScores] | None:
        return None if scores is None else [s for name in names for s in scores[key][name]]

    def compare(names: Sequence[str]) -> dict[str, Any]:
        return compare_scores(
            joined(runs, "hf", names), joined(runs, "hf-ct", names), joined(runs, "vllm", names),
            joined(base, "hf", names), joined(base, "vllm", names),
        )

    names = list(runs["hf"])
    return {**compare(names), "by_dataset": {name: compare([name]) for name in names}}


# ----------------------------------------------------------------- planning


def plan_checkpoints(qset: Any, device: str) -> _Plan:
    """Each variant in the first of :data:`DTYPES` vLLM can load it in, and the base in every dtype used.

    A variant vLLM cannot load in any dtype is skipped with the reason
    (:func:`ray_bench.engines.vllm_support.check_checkpoint`).
    """
    from ray_bench.engines.vllm_options import read_checkpoint_quantization
    from ray_bench.engines.vllm_support import check_checkpoint

    plan = _Plan()
    for (method, scheme), path in qset.variants.items():
        quant = read_checkpoint_quantization(path)
        refused: list[str] = []
        for dtype in DTYPES:
            try:
                check_checkpoint(quant, dtype, device, path.name)
            except ConfigError as exc:
                refused.append(f"{dtype}: {exc}")
                continue
            plan.checkpoints.append(Checkpoint(method, scheme, path, dtype, "; ".join(refused)))
            break
        else:
            plan.skipped.append({"method": method, "scheme": scheme, "reason": refused[0].split(": ", 1)[1]})
    for (method, scheme), error in qset.failed.items():
        plan.skipped.append({"method": method, "scheme": scheme, "reason": f"not in the set: {error}"})
    used = [d for d in DTYPES if d == "float32" or any(c.dtype == d for c in plan.checkpoints)]
    plan.checkpoints[:0] = [Checkpoint("base", "-", qset.base, d) for d in used]
    return plan


# ----------------------------------------------------------------- scoring


def load_questions(
    datasets: Sequence[str], n: int, workdir: Path, say: Callable[[str], None], data_dir: Path | None = None
) -> dict[str, list[ScoreRequest]]:
    """The first ``n`` closed questions of each dataset in ``data_dir``, or of the sample
    (prepared into ``workdir``)."""
    from ray_bench.bench.questions import dataset_questions

    if data_dir is None:
        from ray_bench.datasets import sample_dir
        from ray_bench.datasets.prepare import prepare

        prepare(sample_dir(), workdir, list(datasets), log=say)
        data_dir = workdir
    return {name: dataset_questions(data_dir, name, n) for name in datasets}


def score_checkpoint(
    ckpt: Checkpoint, questions: Mapping[str, list[ScoreRequest]], device: str, say: Callable[[str], None]
) -> dict[str, Scores]:
    """Score ``ckpt`` with every :data:`ENGINE_RUNS` engine; each is loaded once and closed after."""
    from ray_bench.config import EngineConfig, ModelSpec
    from ray_bench.engines.base import create_engine

    out: dict[str, Scores] = {}
    for key, (name, options) in ENGINE_RUNS.items():
        if name == "vllm":
            # Eager on CPU: half the start-up, same speed (docs/engines-vllm.md).
            options = {**options, "enforce_eager": device == "cpu"}
        started = time.perf_counter()
        config = EngineConfig(name=name, dtype=ckpt.dtype, device=device, options=options)
        engine = create_engine(ModelSpec(name="model", path=str(ckpt.path)), config)
        try:
            out[key] = {ds: engine.score_choices(qs) for ds, qs in questions.items()}
        finally:
            engine.close()
        say(f"{ckpt.path.name} {ckpt.dtype} {key}: {time.perf_counter() - started:.1f} s")
    return out


def run_engine_gap(opts: EngineGapOptions, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score the set's checkpoints with every engine and compare (JSON-ready result).

    Raises:
        DependencyError: vLLM is not installed.
        ConfigError: the set or a dataset is missing.
    """
    from ray_bench.bench.quantized_set import read_quantized_set
    from ray_bench.bench.scoring_vllm import require_vllm, vllm_logs_to_stderr

    say = log or (lambda _m: None)
    require_vllm()
    qset = read_quantized_set(opts.set_dir)
    vllm_logs_to_stderr()
    device = _vllm_device()
    plan = plan_checkpoints(qset, device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rb-engine-gap-") as tmp:
        questions = load_questions(opts.datasets, opts.questions, Path(tmp), say, opts.data_dir)
    scores = {}
    for i, ckpt in enumerate(plan.checkpoints):
        say(f"[{i + 1}/{len(plan.checkpoints)}] {ckpt.method} {ckpt.scheme} ({ckpt.dtype})")
        scores[(ckpt.method, ckpt.scheme, ckpt.dtype)] = score_checkpoint(ckpt, questions, device, say)
    rows = [_row(c, scores) for c in plan.checkpoints]
    return {
        "setup": _setup(opts, qset, device, questions),
        "rows": rows,
        "skipped": plan.skipped,
        "seconds": time.perf_counter() - started,
    }


def _row(ckpt: Checkpoint, scores: Mapping[tuple[str, str, str], dict[str, Scores]]) -> dict[str, Any]:
    base = None if ckpt.method == "base" else scores[("base", "-", ckpt.dtype)]
    return {
        "method": ckpt.method,
        "scheme": ckpt.scheme,
        "dtype": ckpt.dtype,
        "checkpoint": str(ckpt.path),
        "note": ckpt.note,
        **compare_runs(scores[(ckpt.method, ckpt.scheme, ckpt.dtype)], base),
    }


def _vllm_device() -> str:
    from vllm.platforms import current_platform

    from ray_bench.engines.vllm_support import resolve_device

    return resolve_device("auto", str(current_platform.device_type))


def _setup(opts: EngineGapOptions, qset: Any, device: str, questions: Mapping[str, list[ScoreRequest]]) -> dict[str, Any]:
    from ray_bench.provenance import package_versions

    return {
        "set_dir": str(qset.root),
        "base": str(qset.base),
        "device": device,
        "datasets": {name: len(qs) for name, qs in questions.items()},
        "questions_requested": opts.questions,
        "engines": {key: {"engine": name, "options": options} for key, (name, options) in ENGINE_RUNS.items()},
        "versions": package_versions(("vllm", "transformers", "torch", "compressed-tensors")),
    }
