"""The synthetic study of the analysis benchmark: models, result draws and the build.

:func:`build_study` writes prepared questions (:mod:`ray_bench.bench.study_questions`),
result shards and a manifest shaped like the full study; :func:`_reuse_or_build` reuses
one of the same shape in a work directory.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ray_bench.bench.study_questions import SubsetShape, _const, _list_array, _questions_table, study_subsets

STUDY_STAMP = "study.json"

#: The 10 base models of the paper (notes 4.1).
BASE_MODELS = (
    "llama3.1-8b-instruct", "llama3.2-1b-instruct", "llama3.2-3b-instruct", "ministral-8b-instruct",
    "qwen2-7b-instruct", "qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "qwen2.5-3b-instruct",
    "qwen2.5-7b-instruct", "qwen2.5-14b-instruct",
)
#: (name suffix, card method, scheme, logit noise sigma, share of open answers that change).
#: The paper's five recipes first; more variants per base take the extra ones.
RECIPES = (
    ("awq-w4a16", "awq", "w4a16", 0.30, 0.55),
    ("gptq-w4a16", "gptq", "w4a16", 0.35, 0.60),
    ("rtn-w4a16", "rtn", "w4a16", 0.45, 0.65),
    ("rtn-w8a16", "rtn", "w8a16", 0.15, 0.35),
    ("smooth-rtn-w4a16", "smoothquant-rtn", "w4a16", 0.50, 0.70),
    ("gptq-w8a16", "gptq", "w8a16", 0.12, 0.30),
    ("rtn-w3a16", "rtn", "w3a16", 0.80, 0.85),
    ("smooth-gptq-w4a16", "smoothquant-gptq", "w4a16", 0.40, 0.60),
)

#: Words of the synthetic open-ended answers (real words, so ROUGE-L's stemmer has work).
_WORDS = tuple(
    "the a people group often because many reason they are more likely to be seen as this is not true and "
    "some believe that others think it depends on culture history society education income family work "
    "community stereotypes unfair individuals should never judge anyone based on their background however "
    "studies suggest differences exist but generalizations harm everyone respect diversity matters every "
    "person deserves equal treatment opportunities vary across regions media portrayal shapes perceptions "
    "research shows bias persists when institutions ignore discrimination it is important avoid assumptions "
    "listen learn understand context complex factors include economics access health care language religion "
    "age gender race disability appearance nationality sexual orientation beliefs values traditions".split()
)
_FMT_EARLY_TURN = "Noted, I will remember your input."
#: Words per synthetic open answer: uniform on [lo, hi].
OPEN_WORDS = (4, 14)


def model_names(n_bases: int = 10, variants_per_base: int = 5) -> list[tuple[str, str | None, tuple | None]]:
    """``(name, base or None, recipe or None)`` of every model: each base, then its variants."""
    if not 1 <= n_bases <= len(BASE_MODELS):
        raise ValueError(f"n_bases must be in 1..{len(BASE_MODELS)}, got {n_bases}")
    if not 1 <= variants_per_base <= len(RECIPES):
        raise ValueError(f"variants_per_base must be in 1..{len(RECIPES)}, got {variants_per_base}")
    out: list[tuple[str, str | None, tuple | None]] = []
    for base in BASE_MODELS[:n_bases]:
        out.append((base, None, None))
        out.extend((f"{base}-{r[0]}", base, r) for r in RECIPES[:variants_per_base])
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class _BaseDraw:
    """What a base model's answers to one dataset directory are drawn from (shared with its variants)."""

    logits: np.ndarray  # [n, K] closed; word indices [n, W] open
    shared: np.ndarray  # the base's common quantization direction [n, K]; open: cut positions
    tokens: np.ndarray  # [n, K] scored tokens per choice; open: word counts [n]
    shift: np.ndarray  # [n] log of the geometric-mean normalizer (closed)


def _draw_base(subset: SubsetShape, question_logits: np.ndarray | None, rng: np.random.Generator) -> _BaseDraw:
    n = subset.questions
    if subset.kind == "closed":
        k = int(subset.num_choices or 0)
        assert question_logits is not None
        # Sharpness spread log-uniformly puts base entropy in all three bins; 0.8/0.6 mixes the
        # question's own preference (shared by all bases) with the base's.
        sharp = np.exp(rng.uniform(np.log(0.3), np.log(10.0), n))[:, None]
        logits = sharp * (0.8 * question_logits + 0.6 * rng.standard_normal((n, k)))
        return _BaseDraw(logits, rng.standard_normal((n, k)), rng.integers(1, 12, (n, k)).astype(np.int32),
                         rng.uniform(0.0, 2.0, n))
    lo, hi = OPEN_WORDS
    lengths = rng.integers(lo, hi + 1, n)
    words = rng.integers(0, len(_WORDS), (n, hi))
    return _BaseDraw(words, rng.integers(0, hi, n), lengths, np.zeros(n))


def _closed_results(draw: _BaseDraw, sigma: float, rng: np.random.Generator) -> dict[str, Any]:
    """Choice scores of a base (``sigma == 0``) or of a variant: base logits plus correlated noise."""
    import pyarrow as pa

    n, k = draw.logits.shape
    logits = draw.logits
    if sigma > 0:
        logits = logits + sigma * (0.5 * draw.shared + 0.866 * rng.standard_normal((n, k)))
    probs = _softmax(logits)
    mean_logprob = np.log(np.maximum(probs, 1e-300)) - draw.shift[:, None]
    sums = mean_logprob * draw.tokens
    return {
        "choice_logprob_sums": _list_array(pa.array(sums.ravel()), k, n),
        "choice_num_tokens": _list_array(pa.array(draw.tokens.ravel()), k, n),
        "choice_probs": _list_array(pa.array(probs.ravel()), k, n),
        "prediction": pa.array(np.argmax(probs, axis=1).astype(np.int32)),
    }


def _open_results(draw: _BaseDraw, change: float, multi_turn: bool, rng: np.random.Generator) -> dict[str, Any]:
    """Short answers of a base (``change == 0``) or a variant, which rewrites a share of them from a cut on."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n, w = draw.logits.shape
    words, lengths = draw.logits, draw.tokens
    if change > 0:
        changed = rng.random(n) < change
        cut = np.minimum(draw.shared, lengths - 1)
        rewrite = changed[:, None] & (np.arange(w)[None, :] >= cut[:, None])
        words = np.where(rewrite, rng.integers(0, len(_WORDS), (n, w)), words)
        lengths = np.where(changed, np.clip(lengths + rng.integers(-2, 3, n), OPEN_WORDS[0], w), lengths)
    vocab = pa.array(list(_WORDS))
    cols = [pc.if_else(pa.array(lengths > j), vocab.take(pa.array(words[:, j])), pa.nulls(n, pa.string()))
            for j in range(w)]
    response = pc.binary_join_element_wise(*cols, " ", null_handling="skip")
    out = {"response": response, "num_output_tokens": pa.array((lengths * 4 // 3).astype(np.int32))}
    if multi_turn:
        early = _const(_FMT_EARLY_TURN, n)
        flat = pa.concat_arrays([early] * 4 + [response])  # turn-major
        order = pa.array((np.arange(5)[None, :] * n + np.arange(n)[:, None]).ravel())
        out["responses"] = _list_array(flat.take(order), 5, n)
    return out


def _results_table(model: str, subset: SubsetShape, questions: Any, cols: dict[str, Any]) -> Any:
    import pyarrow as pa

    from ray_bench.schema import result_schema

    n = questions.num_rows
    base = {
        "question_id": questions["question_id"], "model": _const(model, n), "dataset": questions["dataset"],
        "subset": questions["subset"], "axis": questions["axis"], "kind": questions["kind"],
    }
    schema = result_schema()
    arrays = []
    for f in schema:
        value = base.get(f.name, cols.get(f.name))
        arrays.append(pa.nulls(n, f.type) if value is None else value.cast(f.type))
    return pa.Table.from_arrays([a.combine_chunks() if hasattr(a, "combine_chunks") else a for a in arrays],
                                schema=schema)


def _study_params(n_bases: int, variants_per_base: int, scale: float, seed: int, shard_size: int | None) -> dict:
    return {"n_bases": n_bases, "variants_per_base": variants_per_base, "scale": scale, "seed": seed,
            "shard_size": shard_size, "version": 1}


def build_study(out_dir: str | Path, *, n_bases: int = 10, variants_per_base: int = 5, scale: float = 1.0,
                seed: int = 0, shard_size: int | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Write a synthetic study: prepared questions, result shards and a manifest.

    Layout: ``<out_dir>/data/<subset>.parquet`` (``question_schema``) and ``<out_dir>/results``
    (``manifest.json`` plus ``<model>/<subset>/shard-NNNNN.parquet``, ``result_schema``).
    Variants carry a quantization card naming their base, so ``analyze`` pairs them.

    Closed answers: per question a latent preference shared by all bases; each base adds its own
    and a sharpness drawn log-uniformly, so its normalized entropy spreads over the low /
    medium / high bins; a variant adds Gaussian logit noise (half of it the base's common
    "quantization direction") of its recipe's size, so 3-25% of its predictions flip, more at
    high entropy. Open answers: 4-14 words; a variant rewrites 35-70% of them from a random
    word on. Generated with NumPy and pyarrow, no per-row Python.

    Args:
        out_dir: Directory to write into (created).
        n_bases: Base models (at most 10).
        variants_per_base: Quantized variants of each base (at most 8; the paper's 5 first).
        scale: Multiplies every per-axis question count (at least one question each).
        seed: Seeds everything.
        shard_size: Questions per shard file; ``None``: one shard per (model, dataset).
        log: Optional ``callable(str)`` for progress.

    Returns:
        The results directory (``<out_dir>/results``).
    """
    import pyarrow.parquet as pq

    from ray_bench.config import EngineConfig, RunConfig
    from ray_bench.results import write_shard
    from ray_bench.runner.manifest import MANIFEST_VERSION

    say = log or (lambda _m: None)
    root = Path(out_dir)
    data_dir, results = root / "data", root / "results"
    data_dir.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    subsets = study_subsets(scale)
    models = model_names(n_bases, variants_per_base)
    path_of = {name: f"/models/{name}" for name, _, _ in models}
    shards: dict[str, dict[str, Any]] = {}
    for si, subset in enumerate(subsets):
        say(f"building {subset.name}: {subset.questions} questions x {len(models)} models")
        questions = _questions_table(subset, np.random.default_rng([seed, si, 0]))
        pq.write_table(questions, data_dir / f"{subset.name}.parquet")
        q_logits = None
        if subset.kind == "closed":
            q_logits = np.random.default_rng([seed, si, 1]).standard_normal((subset.questions, int(subset.num_choices or 0)))
        draw: _BaseDraw | None = None
        for mi, (name, base, recipe) in enumerate(models):
            rng = np.random.default_rng([seed, si, 2, mi])
            if base is None:
                draw = _draw_base(subset, q_logits, rng)
            assert draw is not None
            if subset.kind == "closed":
                cols = _closed_results(draw, recipe[3] if recipe else 0.0, rng)
            else:
                cols = _open_results(draw, recipe[4] if recipe else 0.0, subset.family == "FMT10K-IM", rng)
            table = _results_table(name, subset, questions, cols)
            size = shard_size or table.num_rows
            for k, lo in enumerate(range(0, table.num_rows, size)):
                key = f"{name}/{subset.name}/shard-{k:05d}"
                part = table.slice(lo, size)
                fingerprint = f"synthetic-{seed}-{subset.name}-{lo}-{part.num_rows}"
                write_shard(results / f"{key}.parquet", part, fingerprint)
                shards[key] = {"status": "done", "rows": part.num_rows, "errors": 0, "fingerprint": fingerprint}
    engine = EngineConfig(name="vllm", dtype="bfloat16", device="cuda", max_new_tokens=256, seed=seed)
    config = RunConfig(
        models=[{"name": name, "path": path_of[name]} for name, _, _ in models],
        datasets=[s.name for s in subsets], data_dir=data_dir.resolve(), out_dir=results.resolve(),
        engine=engine, seed=seed,
    )
    manifest_models = {}
    for name, base, recipe in models:
        card = None
        if base is not None and recipe is not None:
            card = {"format_version": 1, "base_model": {"name": base, "path": path_of[base]},
                    "method": recipe[1], "scheme": recipe[2], "synthetic": True}
        manifest_models[name] = {"path": path_of[name], "revision": None, "quantization_card": card,
                                 "engine": {"name": "vllm", "dtype": "bfloat16", "device": "cuda"}}
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "runs": [{"config": config.model_dump(mode="json"), "provenance": {"synthetic": "ray-bench bench analysis"}}],
        "models": manifest_models, "shards": shards,
    }
    (results / "manifest.json").write_text(json.dumps(manifest, indent=1))
    stamp = {**_study_params(n_bases, variants_per_base, scale, seed, shard_size), "shape": study_shape(subsets, models, shards)}
    (root / STUDY_STAMP).write_text(json.dumps(stamp, indent=1))
    return results


def study_shape(subsets: list[SubsetShape], models: list, shards: dict) -> dict[str, Any]:
    """Sizes of the synthetic study, for the report."""
    closed = [s for s in subsets if s.kind == "closed"]
    opened = [s for s in subsets if s.kind == "open"]
    n_variants = sum(1 for _, b, _ in models if b is not None)
    return {
        "models": len(models), "bases": len(models) - n_variants, "variants": n_variants,
        "questions": sum(s.questions for s in subsets),
        "closed_questions": sum(s.questions for s in closed), "open_questions": sum(s.questions for s in opened),
        "result_rows": len(models) * sum(s.questions for s in subsets),
        "shard_files": len(shards),
        "subsets": {s.name: {"questions": s.questions, "choices": s.num_choices, "axes": len(s.axes), "kind": s.kind}
                    for s in subsets},
        "open_answer_words": list(OPEN_WORDS),
    }


def _reuse_or_build(work: Path, params: dict, say: Callable[[str], None]) -> tuple[Path, dict]:
    stamp_path = work / STUDY_STAMP
    if stamp_path.is_file():
        stamp = json.loads(stamp_path.read_text())
        if {k: stamp.get(k) for k in params} == params and (work / "results" / "manifest.json").is_file():
            say(f"reusing the study in {work}")
            return work / "results", stamp
    for sub in ("data", "results", STUDY_STAMP):
        target = work / sub
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    started = time.perf_counter()
    results = build_study(work, n_bases=params["n_bases"], variants_per_base=params["variants_per_base"],
                          scale=params["scale"], seed=params["seed"], shard_size=params["shard_size"], log=say)
    stamp = json.loads(stamp_path.read_text())
    stamp["build_seconds"] = round(time.perf_counter() - started, 2)
    stamp_path.write_text(json.dumps(stamp, indent=1))
    return results, stamp
