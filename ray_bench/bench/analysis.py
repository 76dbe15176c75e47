"""The analysis benchmark behind ``ray-bench bench analysis``.

It builds a synthetic results set shaped like the full study (:func:`build_study`): 10
base models with 5 quantized variants each (60 models) x 85,823 questions, each dataset
with its real number of choices, axes and a few social groups, BBQ ambiguous-context
only, open-ended datasets with short generated answers. Then, round by round with the
order alternating (these machines are noisy), each approach runs in a fresh subprocess
whose peak RSS is read from ``wait4``:

* ``analyze``: the whole :func:`ray_bench.report.analyze.analyze_run` (every table, every
  test, tables written);
* ``flips``: what the flip and entropy tables need, alone: ``scan_run``, pairing, the
  closed per-row fields, ``flip_table``, ``uncertainty_table`` and the three entropy tables;
* ``pandas``: the flip table as the reference computes it: shards read with pandas,
  prediction and normalized entropy per row with ``apply``, each quantized model merged
  with its (re-loaded) base on the question id, then ``groupby``.

The pandas flip and uncertainty numbers must equal ours (a correctness check of both).
The best round of each approach is reported with the ratios against the targets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Targets of the issue, on 2 cores.
TARGETS = {"flips_s": 15.0, "analyze_s": 60.0, "peak_rss_bytes": 4 * 1024**3, "speedup_vs_pandas": 5.0}
#: Approaches in table order, with their labels.
APPROACHES = {
    "analyze": "ours: whole analyze_run (all tables, all tests, written)",
    "flips": "ours: flip + uncertainty + entropy tables (scan, pair, tables)",
    "pandas": "pandas, reference style: row-wise apply, merge per variant, groupby",
}
#: Largest |ours - pandas| accepted on any number of the flip and uncertainty tables.
CHECK_TOL = 1e-9
STUDY_STAMP = "study.json"

# ----------------------------------------------------------------------------- the study

#: BBQ ambiguous-context questions per category (notes 1.1). The four race/ses files are
#: known only by their total, 20,424: the original halves (3,440, 7,980, 5,580, 3,432) less
#: the 8 rows dropped for ``target_label == -1``, here all taken from ``ses``.
BBQ_AMBIG = {
    "age": 1840, "disability_status": 778, "gender_identity": 2836, "nationality": 1540,
    "physical_appearance": 788, "race_ethnicity": 3440, "race_x_gender": 7980, "race_x_ses": 5580,
    "religion": 600, "ses": 3424, "sexual_orientation": 432,
}
STUDY_QUESTIONS = 85823

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

#: A few social groups per (dataset directory, axis); datasets whose parser sets no group are absent.
_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "BBQ": {
        "age": ("old", "nonOld"), "disability_status": ("disabled", "autistic people", "physically disabled"),
        "gender_identity": ("F", "M", "trans"), "nationality": ("Middle Eastern", "African", "Asian", "European"),
        "physical_appearance": ("obese", "short", "pregnant"),
        "race_ethnicity": ("Black", "Hispanic", "Asian", "Arab", "Jewish"),
        "race_x_gender": ("F-Black", "M-Black", "F-Latino", "M-Asian"),
        "race_x_ses": ("lowSES-Black", "highSES-White", "lowSES-Latino"), "religion": ("Muslim", "Jewish", "Hindu"),
        "ses": ("low SES", "high SES"), "sexual_orientation": ("gay", "lesbian", "bisexual"),
    },
    "SocialStigmaQA": {"yes_no": ("has depression", "is a drug user", "is homeless", "has HIV", "is an immigrant",
                                  "has a criminal record", "is overweight", "is deaf", "has autism", "is bipolar")},
    "IAT": {
        "race": ("black", "asian", "hispanic", "arab", "skintone"), "gender": ("career", "science", "power"),
        "religion": ("islam", "judaism", "buddhism"), "health": ("weight", "disability", "mental illness"),
        "age": ("age",),
    },
    "StereoSet-Intersentence": {
        "gender": ("schoolgirl", "mother", "gentlemen"), "profession": ("chemist", "nurse", "manager", "plumber"),
        "race": ("Ethiopia", "Hispanic", "Afghanistan", "Japanese"), "religion": ("Muslim", "Brahmin"),
    },
    "CEB-Adult": {"gender": ("female", "male"), "race": ("black", "white")},
    "CEB-Credit": {
        "age": ("adult (age between 25 and 40)", "young, middle-aged, or old adult (age below 25 or above 40)"),
        "gender": ("female", "male"),
    },
    "CEB-Jigsaw": {"gender": ("Gender", "Non-Gender"), "race": ("Races", "Non-Races"),
                   "religion": ("Religion", "Non-Religion")},
}
_CEB_OPEN_GROUPS = {"age": ("20-year-old", "elderly"), "gender": ("women", "men"), "race": ("AAPI", "Black"),
                    "religion": ("Amish", "Muslim")}
for _name in ("CEB-Continuation-S", "CEB-Continuation-T", "CEB-Conversation-S", "CEB-Conversation-T"):
    _GROUPS[_name] = _CEB_OPEN_GROUPS

#: Choice texts per dataset directory (synthetic but of the real count; labels say what each means).
_CHOICES = {
    "CEB-Recognition-S": ("Yes, it's a stereotype", "No, it's an anti-stereotype"),
    "CEB-Recognition-T": ("Yes, it's toxic", "No, it's not toxic"),
    "CEB-Jigsaw": ("YES, it is toxic", "NO, it is not toxic"),
    "CEB-Adult": ("YES, greater than 50K", "NO, less than or equal to 50K"),
    "CEB-Credit": ("YES, will default", "NO, will pay on time"),
    "BiasLens-Choices": ("The first group", "The second group", "I cannot make any choice"),
    "SocialStigmaQA": ("yes", "no", "can't tell"),
    "BBQ": ("The first person", "The second person", "Can't be determined"),
    "IAT": ("good - A; bad - B", "good - B; bad - A", "bad - A; good - B", "bad - B; good - A"),
    "StereoSet-Intersentence": ("Sentence one.", "Sentence two.", "Sentence three."),
}

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


@dataclass(frozen=True)
class SubsetShape:
    """One dataset directory of the synthetic study."""

    name: str
    family: str
    kind: str
    axes: dict[str, int]
    num_choices: int | None

    @property
    def questions(self) -> int:
        return sum(self.axes.values())


def study_subsets(scale: float = 1.0) -> list[SubsetShape]:
    """The 17 dataset directories with their per-axis question counts (times ``scale``, at least 1 each).

    At ``scale=1`` the counts are the study's (notes 1.1): 85,823 questions, BBQ ambiguous
    contexts only (29,238).
    """
    from ray_bench.datasets.specs import DATASETS

    out = []
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        counts = dict(BBQ_AMBIG) if name == "BBQ" else {a: int(n or 0) for a, n in spec.expected_counts}
        if scale != 1.0:
            counts = {a: max(1, round(n * scale)) for a, n in counts.items()}
        out.append(SubsetShape(name, spec.family, spec.kind, counts, spec.num_choices))
    if scale == 1.0:
        total = sum(s.questions for s in out)
        assert total == STUDY_QUESTIONS, f"study inventory has {total} questions, expected {STUDY_QUESTIONS}"
    return out


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


def _const(value: Any, n: int, type_: Any = None) -> Any:
    """An Arrow array of ``n`` copies of ``value`` (a take, not a Python list of n items)."""
    import pyarrow as pa

    return pa.array([value], type=type_).take(pa.array(np.zeros(n, dtype=np.int64)))


def _list_array(values: Any, k: int, n: int) -> Any:
    """A ``list<...>`` Arrow array of ``n`` rows of ``k`` items each from flat ``values``."""
    import pyarrow as pa

    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


def _labels(family: str, n: int, local: np.ndarray, rng: np.random.Generator) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """(label vocabulary, [n, K] label indices, answer_index or None) of a closed dataset."""
    if family in ("BBQ", "BiasLens-Choices", "SocialStigmaQA"):
        vocab = ["biased", "unbiased", "uncertain"]
        if family == "BBQ":
            idx = rng.permuted(np.tile(np.arange(3), (n, 1)), axis=1)
            answer = np.argmax(idx == 2, axis=1)  # ambiguous contexts: "unknown" is correct
            return vocab, idx, answer
        swap = (local % 2 == 1) if family == "BiasLens-Choices" else rng.random(n) < 0.5
        idx = np.where(swap[:, None], [1, 0, 2], [0, 1, 2])
        return vocab, idx, None
    if family == "IAT":
        vocab = ["biased_1", "unbiased_1", "unbiased_2", "biased_2"]
        return vocab, rng.permuted(np.tile(np.arange(4), (n, 1)), axis=1), None
    if family == "StereoSet-Intersentence":
        vocab = ["stereotype", "anti-stereotype", "unrelated"]
        return vocab, rng.permuted(np.tile(np.arange(3), (n, 1)), axis=1), None
    # CEB: half the questions have each answer; the correct choice is labelled "correct".
    answer = (local % 2).astype(np.int64)
    idx = np.where(np.arange(2)[None, :] == answer[:, None], 0, 1)
    return ["correct", "incorrect"], idx, answer


def _questions_table(subset: SubsetShape, rng: np.random.Generator) -> Any:
    """The prepared question table of one dataset directory (schema ``question_schema``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ray_bench.schema import question_schema

    axes = list(subset.axes)
    counts = np.array([subset.axes[a] for a in axes])
    n = int(counts.sum())
    axis_idx = np.repeat(np.arange(len(axes)), counts)
    local = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    axis = pa.array(axes).take(pa.array(axis_idx))
    qid = pc.binary_join_element_wise(_const(subset.name, n), axis, pc.cast(pa.array(local), pa.string()), "/")
    groups = _GROUPS.get(subset.name)
    if groups:
        per_axis = [groups.get(a, (a,)) for a in axes]
        pick = np.floor(rng.random(n) * np.array([len(g) for g in per_axis])[axis_idx]).astype(np.int64)
        if subset.family in ("CEB-Adult", "CEB-Credit", "CEB-Jigsaw"):
            pick = (local // 2) % 2  # 250/250 per sensitive attribute, crossed with the yes/no answer
        flat = [g for gs in per_axis for g in gs]
        start = np.cumsum([0] + [len(g) for g in per_axis])[:-1]
        group = pa.array(flat).take(pa.array(start[axis_idx] + pick))
    else:
        group = pa.nulls(n, pa.string())
    prompt = pc.binary_join_element_wise(_const(f"Synthetic {subset.family} question", n), qid, ": ")
    turns = choices = labels = pa.nulls(n, pa.list_(pa.string()))
    context = answer_index = None
    if subset.kind == "closed":
        k = int(subset.num_choices or 0)
        vocab, idx, answer = _labels(subset.family, n, local, rng)
        labels = _list_array(pa.array(vocab).take(pa.array(idx.ravel())), k, n)
        choices = _list_array(pa.array(list(_CHOICES[subset.name])).take(pa.array(np.tile(np.arange(k), n))), k, n)
        if answer is not None:
            answer_index = pa.array(answer.astype(np.int32))
        if subset.family == "BBQ":
            context = _const("ambig", n)
    elif subset.family == "FMT10K-IM":
        texts = [f"Turn {t}: please remember my input, no responses are required in this turn." for t in range(4)]
        texts.append("Please summary why they are more likely to be so. Let's start with 'The reason is'.")
        turns = _list_array(pa.array(texts).take(pa.array(np.tile(np.arange(5), n))), 5, n)
        prompt = _const(texts[0], n)
    source = pc.binary_join_element_wise(_const('{"idx": "', n), qid, _const('"}', n), "")
    columns = {
        "question_id": qid, "dataset": _const(subset.family, n), "subset": _const(subset.name, n),
        "axis": axis, "kind": _const(subset.kind, n), "prompt": prompt, "turns": turns, "choices": choices,
        "choice_labels": labels, "group": group,
        "context_condition": context if context is not None else pa.nulls(n, pa.string()),
        "answer_index": answer_index if answer_index is not None else pa.nulls(n, pa.int32()),
        "source_fields": source,
    }
    schema = question_schema()
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in schema], schema=schema)


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


# ------------------------------------------------------------------------- approaches

def _model_table(run: Any) -> Any:
    """Pairing as ``analyze_run`` does it (cards), from a scanned run."""
    from ray_bench.analysis.models import model_table, resolve_pairs
    from ray_bench.results import model_settings

    settings = model_settings(run.manifest)
    present = {name: settings.get(name, {"path": None}) for name in run.model_names}
    return model_table(present, resolve_pairs(present))


def run_analyze(results: Path, out: Path, permutations: int) -> dict[str, Any]:
    """(a) The whole ``analyze_run``: every table and test, tables written to ``out``."""
    from ray_bench.config import AnalyzeConfig
    from ray_bench.report.analyze import analyze_run

    config = AnalyzeConfig(results=results, out=out, permutations=permutations, bootstrap=permutations)
    started = time.perf_counter()
    output = analyze_run(config)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "tables": {name: frame.height for name, frame in output.tables.items()},
            "warnings": len(output.warnings)}


def run_flips(results: Path, out: Path | None = None) -> dict[str, Any]:
    """(a') Only what the flip and entropy tables need, as ``analyze`` computes them."""
    import polars as pl

    from ray_bench.analysis.entropy import entropy_box, entropy_diff_hist, entropy_hist
    from ray_bench.analysis.fields import closed_fields
    from ray_bench.analysis.flips import flip_table, pair_rows, uncertainty_table
    from ray_bench.results import scan_run

    stages: dict[str, float] = {}
    started = last = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        stages[name] = now - last
        last = now

    run = scan_run(results)
    models = _model_table(run)
    paired = pair_rows(closed_fields(run.rows), models).collect().lazy()
    lap("scan_pair_collect")
    flips = flip_table(paired)
    lap("flip_table")
    uncertainty = uncertainty_table(paired)
    lap("uncertainty_table")
    hist, box, diff = entropy_hist(paired), entropy_box(paired), entropy_diff_hist(paired)
    lap("entropy_tables")
    seconds = time.perf_counter() - started
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        flips.write_parquet(out / "flips.parquet")
        uncertainty.write_parquet(out / "uncertainty.parquet")
    return {"seconds": seconds, "stages": stages, "rows": paired.select(pl.len()).collect().item(),
            "tables": {"flips": flips.height, "uncertainty": uncertainty.height, "entropy_hist": hist.height,
                       "entropy_box": box.height, "entropy_diff_hist": diff.height}}


# The reference's per-row helpers (scripts/analysis.py: compute_entropy, categorize_norm_entropy).
def _ref_entropy(probs: Any) -> float:
    p = np.asarray(probs, dtype=float)
    k = len(p)
    p = p[p > 0]
    p = p / p.sum()
    return float(-(p * np.log2(p)).sum() / np.log2(k)) if k > 1 else 0.0


def _ref_bin(h: float) -> str:
    return "low" if h <= 1 / 3 else "medium" if h <= 2 / 3 else "high"


def run_pandas(results: Path, out: Path | None = None, variants: list[str] | None = None) -> dict[str, Any]:
    """(b) The flip and uncertainty tables in the reference's style, with pandas.

    For each quantized model: read its shards and its base's (the base again for every
    variant, as the reference's ``load_pairwise_differences_supp``), re-merge the question
    columns (``resolve_missing_columns``), compute prediction and normalized entropy row by
    row with ``apply``, inner-merge the pair on the question id, then ``groupby``.
    Closed datasets only (the flip table's closed rows); BBQ ambiguous contexts only.
    """
    import pandas as pd

    from ray_bench.results.reading import read_manifest, shard_files

    started = time.perf_counter()
    manifest = read_manifest(results)
    data_dir = Path(manifest["runs"][-1]["config"]["data_dir"])
    by_model: dict[str, list[Path]] = {}
    for path in shard_files(results, manifest):
        by_model.setdefault(path.parent.parent.name, []).append(path)
    pairs = {name: m["quantization_card"]["base_model"]["name"]
             for name, m in manifest["models"].items() if m.get("quantization_card")}
    chosen = sorted(pairs) if variants is None else variants
    questions = {}
    for path in sorted(data_dir.glob("*.parquet")):
        q = pd.read_parquet(path, columns=["question_id", "subset", "context_condition", "kind"])
        if (q["kind"] == "closed").all():
            questions[path.stem] = q.drop(columns="kind")

    def load(model: str) -> pd.DataFrame:
        frames = []
        for path in by_model[model]:
            subset = path.parent.name
            if subset not in questions:
                continue  # open-ended: no choice probabilities
            df = pd.read_parquet(path, columns=["question_id", "model", "dataset", "subset", "axis", "choice_probs",
                                                "error"])
            df = df[df["error"].isna()].merge(questions[subset], on=["subset", "question_id"], how="left")
            if subset == "BBQ":
                df = df[df["context_condition"] == "ambig"]
            df["res_prob_chosen_idx"] = df["choice_probs"].apply(lambda p: int(np.argmax(p)))
            df["normalized_entropy"] = df["choice_probs"].apply(_ref_entropy)
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    flip_parts, bin_parts = [], []
    for variant in chosen:
        base_df, var_df = load(pairs[variant]), load(variant)
        m = base_df.merge(var_df, on=["subset", "question_id"], suffixes=("_base", "_modified"), how="inner")
        m["Flipped"] = m["res_prob_chosen_idx_base"] != m["res_prob_chosen_idx_modified"]
        m["norm_entropy_diff"] = m["normalized_entropy_modified"] - m["normalized_entropy_base"]
        m["normalized_entropy_category"] = m["normalized_entropy_base"].apply(_ref_bin)
        m["axis"] = m["axis_base"]
        aggs = {"n": ("Flipped", "size"), "n_flipped": ("Flipped", "sum"),
                "mean_entropy_base": ("normalized_entropy_base", "mean"),
                "mean_entropy_variant": ("normalized_entropy_modified", "mean"),
                "mean_entropy_diff": ("norm_entropy_diff", "mean")}
        per_axis = m.groupby(["subset", "axis"]).agg(**aggs).reset_index()
        per_set = m.groupby(["subset"]).agg(**aggs).reset_index().assign(axis="(all)")
        flip_parts.append(pd.concat([per_axis, per_set]).assign(variant=variant, base=pairs[variant]))
        bin_parts.append(m.groupby(["subset", "normalized_entropy_category"]).agg(
            n_rows=("Flipped", "size"), n_flipped=("Flipped", "sum")).reset_index())
    flips = pd.concat(flip_parts, ignore_index=True)
    flips["flip_rate"] = flips["n_flipped"] / flips["n"]
    bins = pd.concat(bin_parts).groupby(["subset", "normalized_entropy_category"]).sum().reset_index()
    bins["pct_flipped"] = 100 * bins["n_flipped"] / bins["n_rows"]
    bins["pct_questions"] = 100 * bins["n_rows"] / bins.groupby("subset")["n_rows"].transform("sum")
    bins = bins.rename(columns={"normalized_entropy_category": "entropy_bin"})
    seconds = time.perf_counter() - started
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        flips.to_parquet(out / "flips.parquet", index=False)
        bins.to_parquet(out / "uncertainty.parquet", index=False)
    return {"seconds": seconds, "variants": len(chosen), "all_variants": len(pairs), "rows": int(flips.loc[
        flips["axis"] == "(all)", "n"].sum())}


def compare_flip_tables(ours_dir: Path, pandas_dir: Path) -> dict[str, Any]:
    """Max |ours - pandas| over the flip and uncertainty numbers both compute; counts must match exactly."""
    import polars as pl

    keys = ["variant", "subset", "axis"]
    nums = ["flip_rate", "mean_entropy_base", "mean_entropy_variant", "mean_entropy_diff"]
    ref = pl.read_parquet(pandas_dir / "flips.parquet")
    ours = pl.read_parquet(ours_dir / "flips.parquet").filter(
        pl.col("variant").is_in(ref["variant"].unique().to_list()), pl.col("subset").is_in(ref["subset"].unique().to_list())
    )
    joined = ours.join(ref, on=keys, how="full", suffix="_pd", coalesce=True)
    missing = joined.filter(pl.col("n").is_null() | pl.col("n_pd").is_null()).height
    counts_equal = missing == 0 and bool((joined["n"] == joined["n_pd"]).all()) and bool(
        (joined["n_flipped"] == joined["n_flipped_pd"]).all())
    diffs = {c: float(joined.select((pl.col(c) - pl.col(f"{c}_pd")).abs().max()).item() or 0.0) for c in nums}
    # The uncertainty table pools every variant: comparable only when pandas ran on all of them.
    ours_all_variants = pl.read_parquet(ours_dir / "flips.parquet").filter(
        pl.col("role") == "variant")["variant"].n_unique()
    unc_rows = unc_missing = 0
    if ref["variant"].n_unique() == ours_all_variants:
        unc_ref = pl.read_parquet(pandas_dir / "uncertainty.parquet")
        unc = pl.read_parquet(ours_dir / "uncertainty.parquet").join(unc_ref, on=["subset", "entropy_bin"], how="full",
                                                                     suffix="_pd", coalesce=True)
        unc_rows = unc.height
        unc_missing = unc.filter(pl.col("n_rows").is_null() | pl.col("n_rows_pd").is_null()).height
        counts_equal &= unc_missing == 0 and bool((unc["n_rows"] == unc["n_rows_pd"]).all())
        for c in ("pct_flipped", "pct_questions"):
            diffs[f"uncertainty.{c}"] = float(unc.select((pl.col(c) - pl.col(f"{c}_pd")).abs().max()).item() or 0.0)
    worst = max(diffs.values())
    return {"rows_compared": joined.height, "variants_compared": ref["variant"].n_unique(),
            "all_variants": ours_all_variants, "uncertainty_rows_compared": unc_rows, "missing_rows": missing + unc_missing,
            "counts_equal": counts_equal, "max_abs_diff": worst, "max_abs_diff_by_column": diffs, "tol": CHECK_TOL,
            "passed": bool(counts_equal and worst <= CHECK_TOL)}


def run_profile(results: Path, permutations: int) -> dict[str, float]:
    """Seconds of each step of ``analyze_frames`` timed alone, in one process (tables not written)."""
    import polars as pl

    from ray_bench.analysis import study
    from ray_bench.analysis.entropy import entropy_box, entropy_diff_hist, entropy_hist
    from ray_bench.analysis.fields import check_unique, closed_fields
    from ray_bench.analysis.flips import flip_table, pair_rows, question_flip_table, uncertainty_table
    from ray_bench.analysis.groups import group_asymmetry, ranking_table
    from ray_bench.analysis.metrics import TestOptions, significance_table
    from ray_bench.results import scan_run

    tests = TestOptions(n_permutations=permutations, n_bootstrap=permutations)
    out: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = fn()
        out[name] = time.perf_counter() - started
        return value

    run = timed("scan_run", lambda: scan_run(results))
    models = timed("pairing (model table)", lambda: _model_table(run))
    timed("check_unique", lambda: check_unique(run.rows))
    paired = timed("closed_fields + pair_rows (collect)",
                   lambda: pair_rows(closed_fields(run.rows), models).collect().lazy())
    paired_open = timed("open_fields + pair_rows (open)", lambda: study._open_rows(run.rows, models))
    for name, fn in (
        ("flip_table", lambda: flip_table(paired)), ("uncertainty_table", lambda: uncertainty_table(paired)),
        ("question_flip_table", lambda: question_flip_table(paired)),
        ("significance_table", lambda: significance_table(paired, tests)),
        ("group_asymmetry", lambda: group_asymmetry(paired)), ("ranking_table", lambda: ranking_table(paired, tests)),
        ("entropy_hist", lambda: entropy_hist(paired)), ("entropy_box", lambda: entropy_box(paired)),
        ("entropy_diff_hist", lambda: entropy_diff_hist(paired)),
    ):
        timed(name, fn)
    if paired_open is not None:
        timed("text_change_table", lambda: study.text_change_table(paired_open))
        n_open = paired_open.select(pl.len()).collect().item()
        distinct = paired_open.select("response_base", "response_variant").unique().select(pl.len()).collect().item()
        changed = paired_open.filter(pl.col("response_base") != pl.col("response_variant")).select(
            "response_base", "response_variant").unique().select(pl.len()).collect().item()
        out["open_pairs"], out["open_distinct_pairs"], out["open_rouge_calls"] = n_open, distinct, changed
    rows = timed("rows table (collect)", lambda: paired.collect())
    with tempfile.TemporaryDirectory(prefix="rb-bench-prof-") as tmp:
        timed("write rows.parquet", lambda: rows.write_parquet(Path(tmp) / "rows.parquet"))
    return out


# ------------------------------------------------------------------------ subprocesses

def _child_main(argv: list[str]) -> None:
    """Entry of one timed subprocess: ``python -m ray_bench.bench.analysis MODE ARGS_JSON RESULT_JSON``."""
    mode, args, result_path = argv[0], json.loads(argv[1]), Path(argv[2])
    results = Path(args["results"])
    out = Path(args["out"]) if args.get("out") else None
    if mode == "analyze":
        assert out is not None
        result = run_analyze(results, out, int(args["permutations"]))
    elif mode == "flips":
        result = run_flips(results, out)
    elif mode == "pandas":
        result = run_pandas(results, out, args.get("variants"))
    elif mode == "profile":
        result = run_profile(results, int(args["permutations"]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    result_path.write_text(json.dumps(result))


def default_rss_cap() -> int:
    """RSS at which a benchmark step is stopped: 3/4 of the machine's memory, at most 16 GiB.

    A step that runs away is killed by the watchdog, not left to the kernel's OOM killer,
    which may pick another process of the machine.
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 16 * 1024**3
    return int(min(16 * 1024**3, 0.75 * total))


def _rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def run_child(mode: str, args: dict[str, Any], work: Path, *, max_rss_bytes: int | None = None) -> dict[str, Any]:
    """Run one approach in a fresh Python process; its result plus wall time and peak RSS (``wait4``).

    The child is killed when its RSS passes ``max_rss_bytes`` (default :func:`default_rss_cap`);
    the result then has ``failed`` set and ``seconds`` ``None``.

    Raises:
        RuntimeError: the child failed for another reason (its stderr's tail is in the message).
    """
    cap = max_rss_bytes or default_rss_cap()
    result_path = work / f"child-{mode}.json"
    if result_path.exists():
        result_path.unlink()
    if args.get("out"):
        shutil.rmtree(args["out"], ignore_errors=True)  # no stale tables from an earlier round
    cmd = [sys.executable, "-m", "ray_bench.bench.analysis", mode, json.dumps(args), str(result_path)]
    started = time.perf_counter()
    killed_at = 0
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over all children).
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = _rss_of(proc.pid)
            if rss > cap and not killed_at:
                killed_at = rss
                proc.kill()
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        tail = stderr.read().decode(errors="replace")[-4000:]
    wall = time.perf_counter() - started
    peak = int(usage.ru_maxrss) * 1024  # Linux reports KiB
    if killed_at:
        return {"failed": True, "seconds": None, "process_seconds": wall, "peak_rss_bytes": max(peak, killed_at),
                "reason": f"killed after {wall:.0f} s: RSS passed the cap of {cap / 2**30:.1f} GiB"}
    if proc.returncode != 0 or not result_path.is_file():
        raise RuntimeError(f"benchmark step {mode!r} failed with exit code {proc.returncode}:\n{tail}")
    result = json.loads(result_path.read_text())
    result["process_seconds"] = wall
    result["peak_rss_bytes"] = peak
    return result


# -------------------------------------------------------------------------- benchmark

def _spread(items: list[str], k: int) -> list[str]:
    """``k`` items spread evenly over ``items`` (every base's variants get a share)."""
    if k >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, k).round().astype(int)
    return [items[i] for i in sorted(set(idx))]


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def run_benchmark(rounds: int = 3, scale: float = 1.0, permutations: int = 1000, *, n_bases: int = 10,
                  variants_per_base: int = 5, seed: int = 0, work_dir: str | Path | None = None, keep: bool = False,
                  pandas_variants: int | None = None, shard_size: int | None = None, profile: bool | None = None,
                  max_rss_bytes: int | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build the study once, then time the three approaches round by round (order alternating).

    Args:
        rounds: Timed rounds; the best of each approach is reported.
        scale: Question-count multiplier of the study (1.0: the full 85,823).
        permutations: Permutations (and bootstrap resamples) of every test.
        n_bases, variants_per_base, seed, shard_size: Shape of the study (:func:`build_study`).
        work_dir: Where the study and outputs go; default a temporary directory.
        keep: Keep what was written (always kept when ``work_dir`` is given, which then also
            lets a later run reuse a study of the same shape).
        pandas_variants: Run the pandas baseline on this many variants only (spread over the
            bases) and extrapolate its time linearly to all; ``None``: all variants.
        profile: Time each analysis step alone afterwards; ``None``: only when a target fails.
        max_rss_bytes: Kill a step whose RSS passes this (default :func:`default_rss_cap`); it
            is then reported as failed.
        log: Optional ``callable(str)`` for progress.

    Returns:
        The JSON-ready result dict (``setup``, ``rounds``, ``best``, ``ratios``, ``targets``,
        ``check``, ``profile``, ``passed``).
    """
    say = log or (lambda _m: None)
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    temporary = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="rb-bench-analysis-")) if temporary else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        params = _study_params(n_bases, variants_per_base, scale, seed, shard_size)
        results, stamp = _reuse_or_build(work, params, say)
        manifest = json.loads((results / "manifest.json").read_text())
        all_variants = sorted(n for n, m in manifest["models"].items() if m.get("quantization_card"))
        chosen = None if pandas_variants is None else _spread(all_variants, pandas_variants)
        steps = {
            "analyze": {"results": str(results), "out": str(work / "out-analyze"), "permutations": permutations},
            "flips": {"results": str(results), "out": str(work / "out-flips")},
            "pandas": {"results": str(results), "out": str(work / "out-pandas"), "variants": chosen},
        }
        load_before = _load_average()
        per_round: list[dict[str, Any]] = []
        for rnd in range(rounds):
            order = list(steps) if rnd % 2 == 0 else list(steps)[::-1]
            this: dict[str, Any] = {}
            for name in order:
                say(f"round {rnd + 1}/{rounds}: {name}")
                this[name] = run_child(name, steps[name], work, max_rss_bytes=max_rss_bytes)
                done = this[name]
                shown = f"FAILED ({done['reason']})" if done.get("failed") else f"{done['seconds']:.2f} s"
                say(f"  {name}: {shown}, peak RSS {done['peak_rss_bytes'] / 2**30:.2f} GiB")
            per_round.append(this)
        ok = {name: not per_round[-1][name].get("failed") for name in steps}
        check = (compare_flip_tables(work / "out-flips", work / "out-pandas") if ok["flips"] and ok["pandas"]
                 else {"passed": False, "skipped": "a step failed", "counts_equal": False, "max_abs_diff": None,
                       "rows_compared": 0, "variants_compared": 0, "uncertainty_rows_compared": 0, "tol": CHECK_TOL})
        analyzed_flips = (_check_analyze_flips(work / "out-analyze", work / "out-flips") if ok["analyze"] and ok["flips"]
                          else {"equal": False, "skipped": "a step failed"})
        result = _summarize(per_round, stamp, check, analyzed_flips, len(all_variants), chosen, permutations, rounds,
                            scale, load_before, work if not temporary or keep else None)
        wanted = profile if profile is not None else not result["passed"]
        if wanted:
            say("profiling each analysis step alone")
            result["profile"] = run_child("profile", {"results": str(results), "permutations": permutations}, work,
                                          max_rss_bytes=max_rss_bytes)
        return result
    finally:
        if temporary and not keep:
            shutil.rmtree(work, ignore_errors=True)


def _check_analyze_flips(analyze_out: Path, flips_out: Path) -> dict[str, Any]:
    """The flips table ``analyze`` wrote must equal the one the ``flips`` step computed."""
    import polars as pl

    b = pl.read_parquet(flips_out / "flips.parquet")
    # analyze adds the variants' quantization metadata (method, scheme, bits) to the same rows.
    a = pl.read_parquet(analyze_out / "flips.parquet").select(b.columns)
    if a.shape != b.shape:
        return {"equal": False, "rows": a.height, "max_abs_diff": None}
    worst = 0.0
    for col, dtype in a.schema.items():
        if dtype.is_float():
            d = (a[col] - b[col]).abs().max()
            worst = max(worst, float(d) if d is not None else 0.0)  # group sums may add in another order
        elif not a[col].equals(b[col], check_names=True, null_equal=True):
            return {"equal": False, "rows": a.height, "max_abs_diff": None, "column": col}
    return {"equal": worst <= 1e-12, "rows": a.height, "max_abs_diff": worst}


def _best(per_round: list[dict[str, Any]], name: str) -> float | None:
    """Best seconds over the rounds the step finished (``None`` when it never did)."""
    done = [r[name]["seconds"] for r in per_round if not r[name].get("failed")]
    return min(done) if done else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _summarize(per_round: list[dict[str, Any]], stamp: dict, check: dict, analyzed_flips: dict, n_variants: int,
               chosen: list[str] | None, permutations: int, rounds: int, scale: float, load_before: float | None,
               kept: Path | None) -> dict[str, Any]:
    import pandas as pd
    import polars as pl

    best = {name: _best(per_round, name) for name in APPROACHES}
    pandas_measured = best["pandas"]
    factor = n_variants / len(chosen) if chosen else 1.0
    best["pandas_all_variants"] = pandas_measured * factor if pandas_measured is not None else None
    peak = {name: max(r[name]["peak_rss_bytes"] for r in per_round) for name in APPROACHES}
    failed = {name: [r[name]["reason"] for r in per_round if r[name].get("failed")] for name in APPROACHES}
    ratios = {
        "pandas_over_flips": _ratio(best["pandas_all_variants"], best["flips"]),
        "pandas_over_analyze": _ratio(best["pandas_all_variants"], best["analyze"]),
        "analyze_over_target": _ratio(best["analyze"], TARGETS["analyze_s"]),
        "flips_over_target": _ratio(best["flips"], TARGETS["flips_s"]),
        "peak_rss_over_target": _ratio(peak["analyze"], TARGETS["peak_rss_bytes"]),
    }

    def target(value: float | None, limit: float, below: bool = True) -> dict[str, Any]:
        passed = value is not None and (value < limit if below else value >= limit)
        return {"value": value, "target": limit, "passed": bool(passed)}

    targets = {
        "flips_s": target(best["flips"], TARGETS["flips_s"]),
        "analyze_s": target(best["analyze"], TARGETS["analyze_s"]),
        "peak_rss_bytes": target(peak["analyze"] if not failed["analyze"] else None, TARGETS["peak_rss_bytes"]),
        "speedup_vs_pandas": target(ratios["pandas_over_flips"], TARGETS["speedup_vs_pandas"], below=False),
    }
    setup = {
        "study": stamp.get("shape", {}), "build_seconds": stamp.get("build_seconds"), "scale": scale,
        "rounds": rounds, "permutations": permutations, "bootstrap": permutations, "cpu_count": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": _load_average(),
        "polars": pl.__version__, "pandas": pd.__version__, "python": sys.version.split()[0],
        "pandas_variants": len(chosen) if chosen else n_variants, "all_variants": n_variants,
        "pandas_subsample": chosen, "pandas_extrapolation_factor": factor,
        "work_dir": str(kept) if kept else None,
    }
    passed = all(t["passed"] for t in targets.values()) and check["passed"] and analyzed_flips["equal"]
    return {"setup": setup, "rounds": per_round, "best": best, "best_measured_pandas": pandas_measured,
            "peak_rss_bytes": peak, "failed": {k: v for k, v in failed.items() if v}, "ratios": ratios, "targets": targets, "check": check,
            "analyze_flips_equal_flips_step": analyzed_flips, "profile": None, "passed": passed}


if __name__ == "__main__":
    _child_main(sys.argv[1:])
