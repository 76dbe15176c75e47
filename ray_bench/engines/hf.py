"""The Hugging Face ``transformers`` engine (registered as ``hf``), CPU or GPU.

Scoring computes every shared token once: questions whose prompts share a prefix are
packed into one row as a prefix tree (shared prefix, the rest of each prompt, each
choice) with a tree attention mask and naive position ids (:mod:`ray_bench.engines.packing`,
:mod:`ray_bench.engines.hf_scoring`), so every choice is scored exactly as alone. Rows
are batched by ``EngineConfig.max_batch_tokens`` with length bucketing, and the LM head
runs only where a choice token is predicted. Token ids follow
:mod:`ray_bench.engines.prompts` exactly. Generation is greedy by default, or sampled
with a per-question seed (:mod:`ray_bench.engines.hf_generation`).

Engine-specific ``EngineConfig.options``: ``attn_implementation`` (default ``sdpa``;
scoring needs ``sdpa`` or ``eager``), ``trust_remote_code`` (default ``False``),
``share_prefixes`` (default ``True``; ``False`` packs each question alone),
``min_shared_tokens`` (default 16) and ``max_row_tokens`` (default ``min(2048,
max_batch_tokens)``), see :class:`ray_bench.engines.batching.SharingOptions`; a
shared row also stops growing where attention over it would cost more than the shared
tokens save (:func:`ray_bench.engines.batching.joins_row`).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ray_bench.config import EngineConfig, ModelSpec
from ray_bench.engines.base import (
    ChoiceScores,
    Decoding,
    EngineInfo,
    GenerateRequest,
    Generation,
    ScoreRequest,
    register_engine,
)
from ray_bench.engines.batching import check_hf_options, group_questions, max_position_needed, plan_batches, sharing_options
from ray_bench.engines.hf_generation import DecodeSettings, decode_batch, stop_token_ids
from ray_bench.engines.hf_scoring import PackedScorer, attention_pair_cost
from ray_bench.engines.packing import PackedRow, pack_group, pack_question, validate_question
from ray_bench.engines.prompts import render_prompt, request_score_spans, turn_messages
from ray_bench.errors import ConfigError, EngineError, ModelLoadError

_ATTN_FOR_SCORING = ("sdpa", "eager")

#: A question's prompt ids and, per choice, the ids scored after them.
_Spans = tuple[list[int], list[list[int]]]


def resolve_device(device: str) -> torch.device:
    """``auto`` becomes ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but torch sees no CUDA GPU", hint="Use --device cpu or auto.")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is bf16 on CUDA and fp32 elsewhere (CPU bf16 kernels are slow and inexact)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def load_model_and_tokenizer(spec: ModelSpec, config: EngineConfig, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """Load tokenizer and causal LM from ``spec.path``, raising :class:`ModelLoadError` on failure.

    Only ``dtype``/``attn_implementation``/``device_map`` are passed: a checkpoint's own
    ``quantization_config`` (e.g. compressed-tensors) is picked up by ``from_pretrained``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    opts = dict(config.options)
    attn = opts.get("attn_implementation", "sdpa")
    trust = bool(opts.get("trust_remote_code", False))
    local = Path(spec.path).expanduser()
    looks_local = spec.path.startswith((".", "/", "~")) or local.exists()
    if looks_local and not (local / "config.json").is_file():
        what = "does not exist" if not local.exists() else "has no config.json"
        raise ModelLoadError(
            f"model path {spec.path!r} {what}",
            hint="Pass a directory written by save_pretrained (config.json, weights, tokenizer) or a Hub id.",
        )
    path = str(local) if looks_local else spec.path
    # device_map loads straight onto the GPU but needs accelerate; without it, load then move.
    placement = {"device_map": str(device)} if device.type != "cpu" and _has_accelerate() else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=spec.revision, trust_remote_code=trust)
        model = AutoModelForCausalLM.from_pretrained(
            path, revision=spec.revision, dtype=dtype, attn_implementation=attn, trust_remote_code=trust, **placement
        )
        if not placement:
            model.to(device)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... for bad checkpoints
        raise ModelLoadError(
            f"cannot load model {spec.path!r}: {type(exc).__name__}: {exc}",
            hint="Check that the path holds a causal LM with its tokenizer; Hub ids need network access or a local cache.",
        ) from exc
    model.eval()
    return model, tokenizer


def _has_accelerate() -> bool:
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


class HFEngine:
    """Engine over an already loaded ``transformers`` model and tokenizer.

    Args:
        model: A ``*ForCausalLM`` on ``device``.
        tokenizer: Its tokenizer (``AutoTokenizer``).
        config: Engine options (batch budget, decoding, system prompt).
        model_path: Where the model came from (for :meth:`info`).
    """

    def __init__(self, model: Any, tokenizer: Any, config: EngineConfig, *, model_path: str = "") -> None:
        attn = getattr(model.config, "_attn_implementation", "sdpa")
        if attn not in _ATTN_FOR_SCORING:
            raise ConfigError(
                f"attn_implementation {attn!r} cannot take the block attention mask used for scoring",
                hint=f"Use one of {', '.join(_ATTN_FOR_SCORING)} (options.attn_implementation).",
            )
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.model_path = model_path
        self.device = getattr(model, "device", None) or next(model.parameters()).device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.max_positions: int | None = getattr(text_config, "max_position_embeddings", None)
        self.scorer = PackedScorer(model, self.device, self.pad_id)
        self.batch_tokens = config.batch_budget(self.device.type)
        #: What the model computes for quantized activations (set by create_hf_engine).
        self.activation_quantization = "none"
        self.sharing = sharing_options(config.options, self.batch_tokens, attention_pair_cost(model))

    # ----------------------------------------------------------------- scoring
    def score_choices(self, requests: Sequence[ScoreRequest]) -> list[ChoiceScores]:
        """Score every choice of every request, shared prompt tokens computed once; request order."""
        self._require_open()
        results: list[ChoiceScores | None] = [None] * len(requests)
        spans: dict[int, _Spans] = {}
        for i, req in enumerate(requests):
            try:
                spans[i] = self._spans(req)
            except Exception as exc:
                results[i] = ChoiceScores(req.question_id, error=_describe(exc))
        groups = self._groups(spans)
        rows = [pack_group([spans[m][0] for m in g], [spans[m][1] for m in g]) for g in groups]
        for batch in plan_batches([row.length for row in rows], self.batch_tokens):
            self._score_rows([rows[b] for b in batch], [groups[b] for b in batch], spans, requests, results)
        return [r for r in results if r is not None]  # every slot is filled above

    def _spans(self, req: ScoreRequest) -> _Spans:
        """The question's prompt and choice ids, checked to be scorable by this model."""
        prompt_ids, choice_ids = request_score_spans(self.tokenizer, req, self.config.system_prompt)
        validate_question(prompt_ids, choice_ids)
        needed = max_position_needed(len(prompt_ids), [len(c) for c in choice_ids])
        if self.max_positions is not None and needed > self.max_positions:
            raise ValueError(
                f"prompt+choice needs {needed} tokens but the model allows {self.max_positions} "
                f"(prompt {len(prompt_ids)} tokens, longest choice {needed - len(prompt_ids)})"
            )
        return prompt_ids, choice_ids

    def _pack(self, req: ScoreRequest) -> PackedRow:
        """The question packed alone (its row when nothing is shared with other questions)."""
        return pack_question(*self._spans(req))

    def _groups(self, spans: dict[int, _Spans]) -> list[list[int]]:
        """Questions (request indices) that share one row."""
        todo = list(spans)
        if not self.sharing.share_prefixes:
            return [[i] for i in todo]
        grouped = group_questions(
            [spans[i][0] for i in todo],
            [sum(len(c) for c in spans[i][1]) for i in todo],
            min_shared_tokens=self.sharing.min_shared_tokens,
            max_row_tokens=self.sharing.max_row_tokens,
            pair_cost=self.sharing.pair_cost,
        )
        return [[todo[j] for j in g] for g in grouped]

    def _score_rows(
        self,
        rows: list[PackedRow],
        groups: list[list[int]],
        spans: dict[int, _Spans],
        requests: Sequence[ScoreRequest],
        results: list[ChoiceScores | None],
    ) -> None:
        """Score a batch of rows; if it raises, retry row by row, then a group question by question.

        So one bad question fails alone, neither its batch nor the questions sharing its row.
        """
        try:
            outs = self.scorer.score(rows)
        except Exception as exc:
            self._free_cache()
            if len(rows) > 1:
                for row, group in zip(rows, groups):
                    self._score_rows([row], [group], spans, requests, results)
            elif len(groups[0]) > 1:
                for m in groups[0]:
                    self._score_rows([pack_question(*spans[m])], [[m]], spans, requests, results)
            else:
                m = groups[0][0]
                results[m] = ChoiceScores(requests[m].question_id, error=_describe(exc))
            return
        for row_out, group in zip(outs, groups):
            for m, (sums, counts) in zip(group, row_out):
                results[m] = ChoiceScores(requests[m].question_id, logprob_sums=sums, num_tokens=counts)

    def _run_with_retry(
        self,
        members: list[int],
        run: Callable[[list[int]], list[Any]],
        ok: Callable[[int, Any], Any],
        fail: Callable[[int, str], Any],
        results: list[Any],
    ) -> None:
        """Run a batch; if it raises, run its members one by one so only the bad one fails."""
        try:
            outs = run(members)
        except Exception as exc:
            self._free_cache()
            if len(members) == 1:
                results[members[0]] = fail(members[0], _describe(exc))
                return
            for m in members:
                self._run_with_retry([m], run, ok, fail, results)
            return
        for m, out in zip(members, outs):
            results[m] = ok(m, out)

    # -------------------------------------------------------------- generation
    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Answer every request turn by turn, batching all conversations of a turn; request order."""
        self._require_open()
        responses: list[list[str]] = [[] for _ in requests]
        counts = [0] * len(requests)
        errors: list[str | None] = [None if r.num_turns else "request has no user turns" for r in requests]
        for turn in range(max((r.num_turns for r in requests), default=0)):
            active = [i for i, r in enumerate(requests) if errors[i] is None and r.num_turns > turn]
            prompts: dict[int, list[int]] = {}
            for i in active:
                try:
                    prompts[i] = self._generation_prompt(requests[i], responses[i], turn)
                except Exception as exc:
                    errors[i] = _describe(exc)
            outputs: list[Any] = [None] * len(requests)
            for batch in self._generation_batches(prompts, requests):
                self._run_with_retry(
                    batch,
                    lambda ms, t=turn: self._decode([prompts[m] for m in ms], [requests[m] for m in ms], t),
                    lambda m, out: out,
                    lambda m, err: err,
                    outputs,
                )
            for i in prompts:
                if isinstance(outputs[i], str):
                    errors[i] = outputs[i]
                else:
                    responses[i].append(self.tokenizer.decode(outputs[i], skip_special_tokens=True))
                    counts[i] += len(outputs[i])
        return [
            Generation(r.question_id, error=errors[i])
            if errors[i] is not None
            else Generation(r.question_id, responses=tuple(responses[i]), num_output_tokens=counts[i])
            for i, r in enumerate(requests)
        ]

    def _generation_prompt(self, req: GenerateRequest, responses: list[str], turn: int) -> list[int]:
        messages = turn_messages(req.turns, responses, turn, self.config.system_prompt, req.messages)
        ids, _ = render_prompt(self.tokenizer, messages)
        if self.max_positions is not None and len(ids) >= self.max_positions:
            raise ValueError(
                f"turn {turn + 1} prompt has {len(ids)} tokens, the model allows {self.max_positions}"
            )
        return ids

    def _generation_batches(self, prompts: dict[int, list[int]], requests: Sequence[GenerateRequest]) -> list[list[int]]:
        """Batches of ``batch_size`` prompts with one decoding, of similar length (less left padding)."""
        by_decoding: dict[Decoding, list[int]] = {}
        for i in sorted(prompts, key=lambda i: len(prompts[i])):
            by_decoding.setdefault(self._decoding(requests[i]), []).append(i)
        size = self.config.batch_size
        return [order[k : k + size] for order in by_decoding.values() for k in range(0, len(order), size)]

    def _decoding(self, req: GenerateRequest) -> Decoding:
        return req.decoding or self.config.decoding()

    def _decode(self, prompts: list[list[int]], reqs: list[GenerateRequest], turn: int) -> list[list[int]]:
        decoding = self._decoding(reqs[0])  # a batch has one decoding (_generation_batches)
        settings = DecodeSettings(
            decoding.temperature, decoding.top_p, stop_token_ids(self.model, self.tokenizer), self.pad_id
        )
        most = decoding.max_new_tokens
        limits = [most if self.max_positions is None else min(most, self.max_positions - len(p)) for p in prompts]
        generators = [None] * len(prompts)
        if decoding.temperature > 0:
            generators = [
                torch.Generator(device=self.device).manual_seed(decoding.request_seed(r.question_id, turn))
                for r in reqs
            ]
        return decode_batch(self.model, prompts, limits, settings, generators, self.device)

    # -------------------------------------------------------------- lifecycle
    def info(self) -> EngineInfo:
        """Engine, model path, dtype, device and library versions for the run manifest."""
        import transformers

        model = self.model
        # model.dtype is the first *floating* parameter's: packed int weights do not count.
        dtype = str(getattr(model, "dtype", "")).replace("torch.", "") if model is not None else "closed"
        quant = getattr(getattr(model, "config", None), "quantization_config", None)
        quant_method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
        quant_method = getattr(quant_method, "value", quant_method)  # an enum on loaded configs
        return EngineInfo(
            engine="hf",
            model_path=self.model_path,
            dtype=dtype,
            device=str(self.device),
            extra={
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "attn_implementation": str(getattr(getattr(model, "config", None), "_attn_implementation", "")),
                "quantization": str(quant_method or "none"),
                "activation_quantization": self.activation_quantization,
                **self.sharing.describe(),
            },
        )

    def close(self) -> None:
        """Drop the model and free accelerator memory; the engine is unusable afterwards."""
        self.model = None
        self.scorer = None
        gc.collect()
        self._free_cache()

    def _require_open(self) -> None:
        if self.model is None:
            raise EngineError(f"the hf engine for {self.model_path!r} was closed", hint="Create a new engine.")

    def _free_cache(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@register_engine("hf")
def create_hf_engine(model: ModelSpec, config: EngineConfig) -> HFEngine:
    """Load ``model`` with ``transformers`` and wrap it in an :class:`HFEngine`.

    Raises:
        ModelLoadError: the path is missing or does not hold a loadable causal LM.
        ConfigError: the device or attention implementation is unusable.
    """
    check_hf_options(config.options)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    hf_model, tokenizer = load_model_and_tokenizer(model, config, device, dtype)
    from ray_bench.engines.hf_quant import match_activation_quantization

    engine = HFEngine(hf_model, tokenizer, config, model_path=model.path)
    engine.activation_quantization = match_activation_quantization(
        hf_model, config.options.get("activation_quant", "kernel")
    )
    return engine
