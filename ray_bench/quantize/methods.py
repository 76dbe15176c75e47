"""Quantization methods: a registry of recipe builders filled by decorators.

A method turns a :class:`~ray_bench.quantize.schemes.Scheme` and
:class:`~ray_bench.quantize.config.MethodOptions` into a list of
:class:`ModifierSpec` - llmcompressor modifiers described by import path and keyword
arguments. Building specs instead of modifier objects keeps this module free of heavy
imports, lets invalid requests fail before anything is loaded, and gives the card an
exact, JSON-serialisable recipe.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray_bench.errors import QuantizationError
from ray_bench.quantize.config import MethodOptions
from ray_bench.quantize.schemes import Scheme, get_scheme
from ray_bench.registry import Registry

# 0.14 import paths (quantization.md 2.1); the older ones still work but warn.
_QM = "llmcompressor.modifiers.quantization:QuantizationModifier"
_GPTQ = "llmcompressor.modifiers.gptq:GPTQModifier"
_AWQ = "llmcompressor.modifiers.transform:AWQModifier"
_SQ = "llmcompressor.modifiers.transform:SmoothQuantModifier"


@dataclass(frozen=True)
class ModifierSpec:
    """One llmcompressor modifier, not yet instantiated.

    Attributes:
        target: ``module:ClassName`` of the modifier.
        kwargs: Keyword arguments of its constructor (JSON-serialisable).
    """

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def class_name(self) -> str:
        """The modifier's class name, e.g. ``GPTQModifier``."""
        return self.target.rpartition(":")[2]

    def instantiate(self) -> Any:
        """Import the modifier class (needs llmcompressor) and build it."""
        module_name, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module_name), attr)(**self.kwargs)

    def to_dict(self) -> dict[str, Any]:
        """``{"modifier": ClassName, "args": {...}}`` for the quantization card."""
        return {"modifier": self.class_name, "args": dict(self.kwargs)}


RecipeBuilder = Callable[[Scheme, MethodOptions], list[ModifierSpec]]


@dataclass(frozen=True)
class Method:
    """A registered quantization method.

    Attributes:
        name: CLI name (``gptq``, ``smoothquant-rtn``, ...).
        build: Recipe builder ``(scheme, options) -> [ModifierSpec, ...]``.
        needs_calibration: False for data-free methods (RTN).
        description: One line for ``--help`` and the docs.
        unsupported: Scheme name -> why this method refuses it.
    """

    name: str
    build: RecipeBuilder
    needs_calibration: bool
    description: str
    unsupported: dict[str, str] = field(default_factory=dict)

    def supports(self, scheme: str) -> bool:
        """Whether ``scheme`` (a CLI name) can be used with this method."""
        return scheme not in self.unsupported


#: Quantization methods by CLI name; filled by :func:`register_method`.
METHODS: Registry[Method] = Registry("quantization method")


def register_method(
    name: str,
    *,
    needs_calibration: bool,
    description: str,
    unsupported: dict[str, str] | None = None,
) -> Callable[[RecipeBuilder], RecipeBuilder]:
    """Decorator registering a recipe builder as the method ``name``."""

    def decorator(build: RecipeBuilder) -> RecipeBuilder:
        METHODS.add(name, Method(name, build, needs_calibration, description, dict(unsupported or {})))
        return build

    return decorator


def get_method(name: str) -> Method:
    """The method called ``name``; unknown names raise ``UnknownNameError`` with the closest match."""
    return METHODS.get(name.lower())


def check_combination(method: str, scheme: str) -> tuple[Method, Scheme]:
    """Resolve and validate a method x scheme pair before any work is done.

    Raises:
        UnknownNameError: the method or scheme does not exist.
        QuantizationError: the method does not support the scheme.
    """
    m, s = get_method(method), get_scheme(scheme)
    if not m.supports(s.name):
        ok = [x for x in supported_schemes(m.name)]
        raise QuantizationError(
            f"method {m.name!r} does not support scheme {s.name!r}: {m.unsupported[s.name]}",
            hint=f"Use one of {', '.join(ok)} with {m.name!r}, or another method.",
        )
    return m, s


def supported_schemes(method: str) -> list[str]:
    """Scheme names that ``method`` accepts, in registry order."""
    from ray_bench.quantize.schemes import SCHEMES

    m = get_method(method)
    return [s for s in SCHEMES.names() if m.supports(s)]


def build_recipe(method: str, scheme: str, options: MethodOptions | None = None) -> list[ModifierSpec]:
    """Validate the pair and return its recipe (no llmcompressor needed)."""
    m, s = check_combination(method, scheme)
    return m.build(s, options or MethodOptions())


def _quantizer(target: str, preset: str, options: MethodOptions, **extra: Any) -> ModifierSpec:
    kwargs: dict[str, Any] = {"targets": ["Linear"], "scheme": preset, "ignore": list(options.ignore)}
    kwargs.update(extra)
    return ModifierSpec(target, kwargs)


def _smoothquant(options: MethodOptions) -> ModifierSpec:
    return ModifierSpec(_SQ, {"smoothing_strength": options.smoothing_strength})


@register_method("rtn", needs_calibration=False, description="round-to-nearest, data-free")
def _rtn(scheme: Scheme, options: MethodOptions) -> list[ModifierSpec]:
    return [_quantizer(_QM, scheme.preset, options)]


@register_method("gptq", needs_calibration=True, description="GPTQ (second-order error compensation)")
def _gptq(scheme: Scheme, options: MethodOptions) -> list[ModifierSpec]:
    return [_quantizer(_GPTQ, scheme.preset, options, dampening_frac=options.dampening_frac)]


@register_method(
    "awq",
    needs_calibration=True,
    description="AWQ scale search (AWQModifier) followed by round-to-nearest",
)
def _awq(scheme: Scheme, options: MethodOptions) -> list[ModifierSpec]:
    # AWQ's usual form has a zero point (AutoAWQ zero_point=True, as in the reference study).
    preset = scheme.asymmetric_preset or scheme.preset
    return [ModifierSpec(_AWQ, {"duo_scaling": options.duo_scaling}), _quantizer(_QM, preset, options)]


@register_method(
    "smoothquant-rtn",
    needs_calibration=True,
    description="SmoothQuant (activation outliers moved into weights) followed by round-to-nearest",
)
def _sq_rtn(scheme: Scheme, options: MethodOptions) -> list[ModifierSpec]:
    return [_smoothquant(options), _quantizer(_QM, scheme.preset, options)]


@register_method(
    "smoothquant-gptq",
    needs_calibration=True,
    description="SmoothQuant followed by GPTQ",
)
def _sq_gptq(scheme: Scheme, options: MethodOptions) -> list[ModifierSpec]:
    return [_smoothquant(options), _quantizer(_GPTQ, scheme.preset, options, dampening_frac=options.dampening_frac)]
