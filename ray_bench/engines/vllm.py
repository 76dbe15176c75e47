"""The vLLM engine (optional extra ``vllm``): a thin layer over ``vllm.LLM``.

vLLM is imported only when an engine is created, so importing this module never fails;
a missing vLLM raises :class:`~ray_bench.errors.DependencyError` at creation. Request
building, validation and result parsing are the pure functions of
:mod:`ray_bench.engines.vllm_requests`; this module only wires them to vLLM.

Prompts are token ids rendered by :mod:`ray_bench.engines.prompts`, exactly as the HF
engine scores them (vLLM adds no BOS to token prompts). Texts are decoded with the same
HF tokenizer.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_bench.engines import vllm_options as vo
from ray_bench.engines import vllm_requests as vr
from ray_bench.engines.base import (
    ChoiceScores,
    EngineInfo,
    GenerateRequest,
    Generation,
    ScoreRequest,
    register_engine,
)
from ray_bench.engines.prompts import build_messages, render_prompt, score_spans
from ray_bench.errors import ConfigError, DependencyError, EngineError, ModelLoadError, OutputParseError, RequestValidationError

if TYPE_CHECKING:
    from ray_bench.config import EngineConfig, ModelSpec


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise DependencyError("vllm", "vllm") from exc
    return vllm


def _load_tokenizer(model: ModelSpec, trust_remote_code: bool) -> Any:
    # The same loader as the HF engine (AutoTokenizer): two loaders can tokenize
    # differently (pitfalls.md), and the ids must match the HF engine's.
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model.path, revision=model.revision, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError, ValueError, ... for bad paths
        raise ModelLoadError(
            f"cannot load the tokenizer of {model.path!r}: {exc}",
            hint="Pass a local checkpoint directory or a reachable Hugging Face id.",
        ) from exc


@register_engine("vllm")
def create_vllm_engine(model: ModelSpec, config: EngineConfig) -> VllmEngine:
    """Create a :class:`VllmEngine` for ``model`` (the ``"vllm"`` engine factory).

    Raises:
        ConfigError: invalid ``config.options``, dtype or temperature, or ``device='cpu'``.
        DependencyError: vLLM is not installed.
        ModelLoadError: the tokenizer or the model does not load.
        EngineError: ``scoring_method='token_ids'`` without Model Runner V2.
    """
    options = vo.parse_vllm_options(config.options)
    dtype = vo.resolve_dtype(config.dtype, options.dtype)
    vr.generation_params(config.max_new_tokens, config.temperature, config.top_p, config.seed)
    if config.device == "cpu":
        raise ConfigError(
            "the vLLM engine runs on CUDA GPUs only, but device='cpu' was requested",
            hint="Use --engine hf on CPU.",
        )
    vllm = _import_vllm()
    from vllm.exceptions import VLLMClientError

    local = Path(model.path).expanduser()
    if local.exists():  # vLLM and transformers do not expand "~"
        model = model.model_copy(update={"path": str(local)})

    checkpoint_quant = vo.read_checkpoint_quantization(model.path)
    tokenizer = _load_tokenizer(model, options.trust_remote_code)
    llm, v2 = _load_llm(vllm, model, options, dtype, config.seed)
    extra = {
        "vllm_version": str(vllm.__version__),
        "model_runner": "v2" if v2 else "v1",
        **checkpoint_quant.as_extra(),
    }
    return VllmEngine(
        llm,
        tokenizer,
        model=model,
        config=config,
        options=options,
        make_params=lambda kwargs: vllm.SamplingParams(**_as_arrays(kwargs)),
        make_prompt=lambda ids: vllm.TokensPrompt(prompt_token_ids=ids),
        recoverable=(VLLMClientError, ValueError, TypeError),
        info_extra=extra,
    )


def _load_llm(vllm: Any, model: ModelSpec, options: vo.VllmOptions, dtype: str, seed: int) -> tuple[Any, bool]:
    """The ``vllm.LLM`` and whether it runs Model Runner V2 (required by ``token_ids``)."""
    try:
        llm = vllm.LLM(**vo.llm_kwargs(model.path, model.revision, options, dtype, seed))
    except Exception as exc:  # vLLM raises many types (ValueError, RuntimeError, OOM) on load
        raise ModelLoadError(
            f"vLLM could not load {model.path!r}: {exc}",
            hint="Check the checkpoint and the vLLM options (max_model_len, gpu_memory_utilization).",
        ) from exc
    v2 = bool(llm.llm_engine.vllm_config.use_v2_model_runner)
    if options.scoring_method == "token_ids" and not v2:
        _shutdown(llm)
        raise EngineError(
            "scoring_method 'token_ids' needs vLLM's Model Runner V2, which this model/config does not use",
            hint="Set VLLM_USE_V2_MODEL_RUNNER=1 or the engine option scoring_method: prompt_logprobs.",
        )
    return llm, v2


def _as_arrays(kwargs: dict[str, Any]) -> dict[str, Any]:
    # SamplingParams documents prompt_logprob_token_ids as an int array [rows, ids].
    if kwargs.get("prompt_logprob_token_ids") is not None:
        import numpy as np

        kwargs = {**kwargs, "prompt_logprob_token_ids": np.asarray(kwargs["prompt_logprob_token_ids"], dtype=np.int32)}
    return kwargs


def _shutdown(llm: Any) -> None:
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


class VllmEngine:
    """An :class:`~ray_bench.engines.base.Engine` on a loaded ``vllm.LLM``.

    Created by :func:`create_vllm_engine`; the constructor takes the vLLM hooks as
    arguments so that the orchestration runs in tests with a fake ``LLM``.

    Args:
        llm: A ``vllm.LLM`` (or an object with its ``generate`` and ``model_config``).
        tokenizer: The HF tokenizer of the model.
        model: The model spec.
        config: The engine config.
        options: Validated vLLM options.
        make_params: Builds a ``SamplingParams`` from keyword arguments.
        make_prompt: Builds a ``TokensPrompt`` from token ids.
        recoverable: Exceptions by which vLLM refuses a request (narrowed per question).
        info_extra: Extra provenance entries for :meth:`info`.
    """

    def __init__(
        self,
        llm: Any,
        tokenizer: Any,
        *,
        model: ModelSpec,
        config: EngineConfig,
        options: vo.VllmOptions,
        make_params: Callable[[dict[str, Any]], Any],
        make_prompt: Callable[[list[int]], Any],
        recoverable: tuple[type[BaseException], ...],
        info_extra: dict[str, str] | None = None,
    ) -> None:
        self._llm, self._tokenizer = llm, tokenizer
        self._model, self._config, self._options = model, config, options
        self._make_params, self._make_prompt = make_params, make_prompt
        self._recoverable = recoverable
        model_config = llm.model_config
        self._max_model_len = int(model_config.max_model_len)
        self._vocab_size = int(model_config.get_vocab_size())
        self._info = EngineInfo(
            engine="vllm",
            model_path=model.path,
            dtype=str(model_config.dtype).removeprefix("torch."),
            device="cuda",
            extra={
                **(info_extra or {}),
                "quantization": str(model_config.quantization or "none"),
                "scoring_method": options.scoring_method,
                "max_model_len": str(self._max_model_len),
                "tensor_parallel_size": str(options.tensor_parallel_size),
                "gpu_memory_utilization": str(options.gpu_memory_utilization),
                "enable_prefix_caching": str(options.enable_prefix_caching).lower(),
                "revision": model.revision or "none",
            },
        )

    # ------------------------------------------------------------------ scoring

    def score_choices(self, requests: Sequence[ScoreRequest]) -> list[ChoiceScores]:
        """Score every choice; all questions go to vLLM in one call (k choices adjacent)."""
        self._require_open()
        groups: list[list[vr.ChoiceRequest]] = []
        errors: dict[int, str] = {}
        for qi, req in enumerate(requests):
            try:
                prompt_ids, choice_ids = score_spans(
                    self._tokenizer, req.prompt, req.choices, self._config.system_prompt
                )
                vr.check_question(prompt_ids, choice_ids, self._max_model_len, self._vocab_size)
                groups.append(vr.build_question_requests(qi, prompt_ids, choice_ids))
            except RequestValidationError as exc:
                errors[qi] = str(exc)
                groups.append([])
        results: dict[int, dict[int, vr.ChoiceResult]] = {qi: {} for qi in range(len(requests))}
        resend = self._score_round(groups, False, results, errors)
        if resend:
            self._score_round(resend, True, results, errors)
        return [
            vr.assemble_scores(req.question_id, len(req.choices), results[qi], errors.get(qi))
            for qi, req in enumerate(requests)
        ]

    def _score_round(
        self,
        groups: list[list[vr.ChoiceRequest]],
        skip_cache: bool,
        results: dict[int, dict[int, vr.ChoiceResult]],
        errors: dict[int, str],
    ) -> list[list[vr.ChoiceRequest]]:
        """One ``generate`` call; fills ``results``/``errors``, returns the empty ones."""
        method = self._options.scoring_method

        def submit(batch: list[vr.ChoiceRequest]) -> list[Any]:
            params = [
                self._make_params(vr.scoring_params(r, method, skip_reading_prefix_cache=skip_cache)) for r in batch
            ]
            return self._llm.generate([self._make_prompt(r.token_ids) for r in batch], params, use_tqdm=False)

        resend: list[list[vr.ChoiceRequest]] = []
        for group, outputs in zip(groups, vr.submit_isolated(groups, submit, self._recoverable)):
            if not group:
                continue
            qi = group[0].question
            if isinstance(outputs, BaseException):
                errors[qi] = f"vLLM refused the question: {outputs}"
                continue
            try:
                parsed = [vr.parse_choice_output(o, r, method) for r, o in zip(group, outputs)]
            except OutputParseError as exc:
                errors[qi] = str(exc)
                continue
            results[qi].update({r.choice: p for r, p in zip(group, parsed) if p is not None})
            empty = [r for r, p in zip(group, parsed) if p is None]
            if empty:
                resend.append(empty)
        return resend

    # ------------------------------------------------------------------ generation

    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Answer every conversation turn by turn; one ``generate`` call per turn."""
        self._require_open()
        responses: list[list[str]] = [[] for _ in requests]
        counts = [0] * len(requests)
        errors = {i: "the request has no turns" for i, r in enumerate(requests) if not r.turns}
        for turn in range(max((len(r.turns) for r in requests), default=0)):
            active = [i for i, r in enumerate(requests) if turn < len(r.turns) and i not in errors]
            prompts = self._turn_prompts(requests, responses, active, turn, errors)
            ready = [i for i in active if i not in errors]
            batch = [[(prompts[i], vr.request_seed(self._config.seed, requests[i].question_id, turn))] for i in ready]
            outputs = vr.submit_isolated(batch, self._submit_generation, self._recoverable)
            for i, out in zip(ready, outputs):
                try:
                    if isinstance(out, BaseException):
                        raise RequestValidationError(f"vLLM refused the conversation: {out}")
                    ids = vr.generated_token_ids(out[0])
                except (RequestValidationError, OutputParseError) as exc:
                    errors[i] = f"turn {turn}: {exc}"
                    continue
                responses[i].append(self._tokenizer.decode(ids, skip_special_tokens=True))
                counts[i] += len(ids)
        return [
            Generation(r.question_id, error=errors[i])
            if i in errors
            else Generation(r.question_id, responses=tuple(responses[i]), num_output_tokens=counts[i])
            for i, r in enumerate(requests)
        ]

    def _turn_prompts(
        self,
        requests: Sequence[GenerateRequest],
        responses: list[list[str]],
        active: list[int],
        turn: int,
        errors: dict[int, str],
    ) -> dict[int, list[int]]:
        """Token ids of each active conversation's history up to ``turn``."""
        prompts: dict[int, list[int]] = {}
        for i in active:
            messages = build_messages(requests[i].turns[: turn + 1], responses[i], self._config.system_prompt)
            ids, _ = render_prompt(self._tokenizer, messages)
            try:
                vr.check_generation_prompt(len(ids), self._config.max_new_tokens, self._max_model_len)
            except RequestValidationError as exc:
                errors[i] = f"turn {turn}: {exc}"
                continue
            prompts[i] = ids
        return prompts

    def _submit_generation(self, batch: list[tuple[list[int], int]]) -> list[Any]:
        cfg = self._config
        params = [
            self._make_params(vr.generation_params(cfg.max_new_tokens, cfg.temperature, cfg.top_p, seed))
            for _, seed in batch
        ]
        return self._llm.generate([self._make_prompt(ids) for ids, _ in batch], params, use_tqdm=False)

    # ------------------------------------------------------------------ lifecycle

    def info(self) -> EngineInfo:
        """vLLM version, quantization (checkpoint and vLLM's view) and settings."""
        return self._info

    def _require_open(self) -> None:
        if self._llm is None:
            raise EngineError("the vLLM engine was closed", hint="Create a new engine.")

    def close(self) -> None:
        """Shut the engine core down and free GPU memory."""
        if self._llm is None:
            return
        _shutdown(self._llm)
        self._llm = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
