"""The quantization stage: make compressed-tensors variants of a model with llmcompressor.

Importing this package is cheap (no torch, transformers, llmcompressor or Ray); the
heavy imports happen inside :func:`quantize_model`.

Public API:
    * :func:`quantize_model` - make one variant in this process, return its directory;
    * :func:`read_card` / :data:`CARD_NAME` - the provenance card of a variant;
    * :data:`METHODS`, :data:`SCHEMES`, :func:`check_combination`, :func:`supported_schemes`;
    * :func:`variant_name` - the ``<base>-<method>-<scheme>`` naming convention;
    * :class:`CalibrationConfig`, :class:`MethodOptions`, :class:`QuantizeJobConfig`.
"""

from ray_bench.quantize.api import quantize_model, quantize_variant
from ray_bench.quantize.card import CARD_NAME, read_card
from ray_bench.quantize.config import CalibrationConfig, MethodOptions, QuantizeJobConfig, Variant
from ray_bench.quantize.methods import METHODS, check_combination, register_method, supported_schemes
from ray_bench.quantize.output import variant_name
from ray_bench.quantize.schemes import SCHEMES

__all__ = [
    "CARD_NAME",
    "METHODS",
    "SCHEMES",
    "CalibrationConfig",
    "MethodOptions",
    "QuantizeJobConfig",
    "Variant",
    "check_combination",
    "quantize_model",
    "quantize_variant",
    "read_card",
    "register_method",
    "supported_schemes",
    "variant_name",
]
