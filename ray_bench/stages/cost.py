"""What a run will cost, before it runs: tokens per (model, dataset) and GPU-hours (no Ray, no GPU).

Per question, counted with the model's own tokenizer (loaded from its checkpoint, no weights):

* closed: the prompt as rendered by the chat template, plus every choice's tokens; the forward
  tokens after prefix sharing are ``prompt + sum(choices)`` (both engines compute the prompt
  once per question: packed rows in ``hf``, the prefix cache in ``vllm``), against
  ``k * prompt + sum(choices)`` without sharing;
* open: the prompt tokens of every turn (the history is cached across turns) and at most
  ``max_new_tokens`` generated per turn (an upper bound: generation stops earlier on EOS).

The chat template's own tokens are measured once per tokenizer (rendered around a one-word
message) and added per turn, so tens of thousands of prompts are tokenized in one batch call.
A tokenizer that cannot be loaded (a hub id offline) falls back to 4 characters per token, and
the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_bench.config import EngineConfig, ModelSpec

#: Characters per token when no tokenizer is available (English text, BPE vocabularies).
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class DatasetCost:
    """Token counts of one model's pending questions of one dataset."""

    model: str
    dataset: str
    questions: int
    pending: int
    prompt_tokens: int
    choice_tokens: int
    forward_tokens: int
    unshared_forward_tokens: int
    decode_tokens_max: int
    tokenizer: str


@dataclass(frozen=True)
class Throughput:
    """GPU throughput figures (per GPU): forward (prefill and scoring) and generated tokens per second."""

    forward_tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None

    def gpu_hours(self, forward: int, decode: int) -> float | None:
        """GPU-hours of ``forward`` + ``decode`` tokens, ``None`` when a needed figure is missing."""
        if self.forward_tokens_per_s is None or (decode and self.decode_tokens_per_s is None):
            return None
        seconds = forward / self.forward_tokens_per_s + (decode / self.decode_tokens_per_s if decode else 0.0)
        return seconds / 3600


class _Counter:
    """Token lengths of many texts with one tokenizer (or the character fallback)."""

    def __init__(self, model: ModelSpec, engine: EngineConfig) -> None:
        if engine.name == "dummy":  # it tokenizes nothing; and importing transformers costs seconds
            self.tokenizer, self.source = None, f"estimated at {CHARS_PER_TOKEN:g} characters/token (dummy engine)"
        else:
            self.tokenizer, self.source = _load_tokenizer(model)
        self.turn_overhead, self.space_before_choice = self._template(engine.system_prompt)

    def _template(self, system_prompt: str | None) -> tuple[int, bool]:
        if self.tokenizer is None:
            return 8, True
        from ray_bench.engines.prompts import build_messages, render_prompt

        ids, text = render_prompt(self.tokenizer, build_messages(["word"], system_prompt=system_prompt))
        return max(len(ids) - self.lengths(["word"])[0], 0), not (text and text[-1].isspace())

    def lengths(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if self.tokenizer is None:
            return [max(1, round(len(t) / CHARS_PER_TOKEN)) for t in texts]
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _load_tokenizer(model: ModelSpec) -> tuple[Any, str]:
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model.path, revision=model.revision, local_files_only=True)
        return tok, f"{model.path} tokenizer"
    except Exception as exc:  # noqa: BLE001 - offline hub ids, missing files: estimate instead
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"estimated at {CHARS_PER_TOKEN:g} characters/token (no tokenizer: {first[:80]})"


def dataset_cost(counter: _Counter, model: str, dataset: str, table: pa.Table, max_new_tokens: int) -> DatasetCost:
    """The token counts of all of ``table``'s questions (see :func:`scaled` for a part of them)."""
    cols = table.select(["kind", "prompt", "turns", "choices"]).to_pydict()
    closed = [i for i, k in enumerate(cols["kind"]) if k == "closed"]
    opened = [i for i, k in enumerate(cols["kind"]) if k != "closed"]
    prompts = counter.lengths([cols["prompt"][i] for i in closed])
    space = " " if counter.space_before_choice else ""
    choice_lists = [cols["choices"][i] or [] for i in closed]
    flat = counter.lengths([space + c for choices in choice_lists for c in choices])
    prompt_tokens = sum(prompts) + counter.turn_overhead * len(closed)
    choice_tokens = sum(flat)
    unshared = prompt_tokens + choice_tokens
    for p, choices in zip(prompts, choice_lists):
        unshared += (len(choices) - 1) * (p + counter.turn_overhead) if choices else 0
    turns = [cols["turns"][i] or [cols["prompt"][i]] for i in opened]
    open_prompt = sum(counter.lengths([t for ts in turns for t in ts])) + counter.turn_overhead * sum(map(len, turns))
    decode = max_new_tokens * sum(map(len, turns))
    return DatasetCost(
        model=model, dataset=dataset, questions=table.num_rows, pending=table.num_rows,
        prompt_tokens=prompt_tokens + open_prompt, choice_tokens=choice_tokens,
        forward_tokens=prompt_tokens + choice_tokens + open_prompt, unshared_forward_tokens=unshared + open_prompt,
        decode_tokens_max=decode, tokenizer=counter.source,
    )


def scaled(full: DatasetCost, model: str, pending: int) -> DatasetCost:
    """``full``'s counts for ``pending`` of its questions (the dataset's average per question)."""
    from dataclasses import replace

    share = pending / full.questions if full.questions else 0.0
    return replace(
        full, model=model, pending=pending, prompt_tokens=round(full.prompt_tokens * share),
        choice_tokens=round(full.choice_tokens * share), forward_tokens=round(full.forward_tokens * share),
        unshared_forward_tokens=round(full.unshared_forward_tokens * share),
        decode_tokens_max=round(full.decode_tokens_max * share),
    )


def estimate_costs(
    models: list[ModelSpec], engine: EngineConfig, questions: dict[str, pa.Table], pending: dict[tuple[str, str], int]
) -> list[DatasetCost]:
    """Token counts of every (model, dataset); ``pending``: questions still to run per (model, dataset).

    Models sharing a tokenizer directory's contents are counted once.
    """
    counted: dict[str, list[DatasetCost]] = {}
    out: list[DatasetCost] = []
    for model in models:
        key = _tokenizer_key(model)
        if key not in counted:
            counter = _Counter(model, engine)
            counted[key] = [dataset_cost(counter, model.name, name, table, engine.max_new_tokens)
                            for name, table in questions.items()]
        out.extend(scaled(full, model.name, pending.get((model.name, full.dataset), 0)) for full in counted[key])
    return out


def _tokenizer_key(model: ModelSpec) -> str:
    """Identity of a model's tokenizer: the hash of its tokenizer files, else its path."""
    import hashlib
    from pathlib import Path

    root = Path(model.path).expanduser()
    files = [root / n for n in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model") if (root / n).is_file()]
    if not files:
        return f"{model.path}@{model.revision}"
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()
