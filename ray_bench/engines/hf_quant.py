"""Quantized activations in the HF engine computed as the deployed kernels compute them.

A compressed-tensors W8A8 checkpoint (int8 weights, int8 activations quantized per token
at run time) loads in transformers as dequantized weights plus compressed-tensors' fake
quantization of every linear layer's input. That fake quantization scales each token by
``absmax / 127.5`` (``(q_max - q_min) / 2`` over [-128, 127], ``compressed_tensors``
``calculate_qparams``), while vLLM's int8 kernels (CUDA ``dynamic_scaled_int8_quant``,
CPU ``onednn_scaled_int8_quant``, checked by ``tests/engines/test_hf_quant.py``) scale by
``absmax / 127``. The two round differently, and on a tiny model that moved choice
log-prob sums by about as much as W8A8 itself did, so a W8A8 bias delta depended on the
engine. In ``kernel`` mode (the default) the HF engine quantizes those activations as the
kernels do: per token, scale ``absmax / 127``, round half to even, clamp to [-128, 127].
"""

from __future__ import annotations

from typing import Any, Literal

#: ``kernel``: per-token scale absmax/127 as vLLM's int8 kernels; ``compressed-tensors``:
#: leave compressed-tensors' own fake quantization (absmax/127.5).
ActivationQuantMode = Literal["kernel", "compressed-tensors"]
ACTIVATION_QUANT_MODES: tuple[str, ...] = ("kernel", "compressed-tensors")

KERNEL_DESCRIPTION = "int8 per-token dynamic, scale absmax/127 (as vLLM's kernels)"
CT_DESCRIPTION = "compressed-tensors fake quantization (int8 per-token scale absmax/127.5; vLLM's kernels use absmax/127)"
OTHER_DESCRIPTION = "compressed-tensors fake quantization ({scheme}); not matched to a kernel"


def _is_int8_dynamic_token(args: Any) -> bool:
    strategy = getattr(getattr(args, "strategy", None), "value", getattr(args, "strategy", None))
    kind = getattr(getattr(args, "type", None), "value", getattr(args, "type", None))
    return (
        getattr(args, "num_bits", None) == 8
        and str(kind) == "int"
        and bool(getattr(args, "symmetric", False))
        and getattr(args, "dynamic", False) is True
        and str(strategy) == "token"
    )


def kernel_int8_per_token(x: Any) -> Any:
    """Quantize-dequantize ``x`` per token (last dim) as vLLM's dynamic int8 kernels do.

    Computed in fp32 and cast back to ``x``'s dtype; an all-zero token stays zero.
    """
    import torch

    xf = x.float()
    scale = xf.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny) / 127.0
    return (torch.clamp(torch.round(xf / scale), -128, 127) * scale).to(x.dtype)


def _pre_hook(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (kernel_int8_per_token(args[0]), *args[1:])


def match_activation_quantization(model: Any, mode: ActivationQuantMode = "kernel") -> str:
    """Make ``model``'s quantized activations follow ``mode``; returns what it now computes.

    Returns:
        ``none`` (no quantized activations), :data:`KERNEL_DESCRIPTION`,
        :data:`CT_DESCRIPTION`, or :data:`OTHER_DESCRIPTION` for a scheme no kernel rule
        is known for (left to compressed-tensors; the manifest says so).
    """
    modules = [
        m for m in model.modules()
        if getattr(getattr(m, "quantization_scheme", None), "input_activations", None) is not None
    ]
    if not modules:
        return "none"
    others = sorted({_scheme_text(m.quantization_scheme.input_activations) for m in modules
                     if not _is_int8_dynamic_token(m.quantization_scheme.input_activations)})
    if others:
        return OTHER_DESCRIPTION.format(scheme="; ".join(others))
    if mode == "compressed-tensors":
        return CT_DESCRIPTION
    _decompress(model)
    for module in modules:
        # Weights are already dequantized; the hook does the input, nothing else is redone.
        module.quantization_enabled = False
        module.register_forward_pre_hook(_pre_hook)
    return KERNEL_DESCRIPTION


def _decompress(model: Any) -> None:
    """Run one token through ``model``: compressed-tensors decompresses weights on the first forward."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device))


def _scheme_text(args: Any) -> str:
    strategy = getattr(getattr(args, "strategy", None), "value", getattr(args, "strategy", None))
    kind = getattr(getattr(args, "type", None), "value", getattr(args, "type", None))
    dynamic = "dynamic" if getattr(args, "dynamic", False) else "static"
    sym = "symmetric" if getattr(args, "symmetric", False) else "asymmetric"
    return f"{kind}{getattr(args, 'num_bits', '?')} {strategy} {dynamic} {sym}"
