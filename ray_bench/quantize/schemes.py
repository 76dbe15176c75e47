"""Quantization schemes (``w4a16``, ``w8a16``, ``w8a8``) and what they mean exactly.

Each scheme maps to a compressed-tensors preset. The presets' details matter for the
study's metadata and are easy to get wrong (quantization.md 2.1): ``W8A16`` is
*group-wise* (group 128), not per-channel; ``W8A8`` has per-channel int8 weights and
dynamic per-token int8 activations. The card records the details read back from the
saved checkpoint; the values here are what the preset promises, used before a run.
"""

from __future__ import annotations

from dataclasses import dataclass

from ray_bench.registry import Registry


@dataclass(frozen=True)
class Scheme:
    """One weight/activation quantization scheme.

    Attributes:
        name: Lower-case CLI name (``w4a16``).
        preset: compressed-tensors preset name used by default (``W4A16``).
        weight_bits: Bits per weight.
        activation_bits: Bits per activation (16 means not quantized).
        weight_strategy: ``group`` or ``channel``.
        group_size: Columns per weight group (``None`` for per-channel).
        symmetric: Whether weights are quantized without a zero point.
        activation_strategy: ``token`` for dynamic per-token activations, else ``None``.
        asymmetric_preset: Preset with a zero point, for methods that use one (AWQ).
    """

    name: str
    preset: str
    weight_bits: int
    activation_bits: int
    weight_strategy: str
    group_size: int | None
    symmetric: bool
    activation_strategy: str | None = None
    asymmetric_preset: str | None = None

    @property
    def weight_only(self) -> bool:
        """True when activations stay in 16 bit."""
        return self.activation_bits >= 16

    def describe(self, symmetric: bool | None = None) -> str:
        """Short human description, e.g. ``int4 weights, group 128, symmetric``.

        Args:
            symmetric: Overrides :attr:`symmetric` (AWQ uses the asymmetric preset).
        """
        sym = self.symmetric if symmetric is None else symmetric
        gran = f"group {self.group_size}" if self.group_size else "per-channel"
        text = f"int{self.weight_bits} weights, {gran}, {'symmetric' if sym else 'asymmetric'}"
        if not self.weight_only:
            text += f"; int{self.activation_bits} dynamic per-{self.activation_strategy} activations"
        return text


#: Schemes by CLI name.
SCHEMES: Registry[Scheme] = Registry("quantization scheme")


def _add(scheme: Scheme) -> None:
    SCHEMES.add(scheme.name, scheme)


_add(Scheme("w4a16", "W4A16", 4, 16, "group", 128, True, asymmetric_preset="W4A16_ASYM"))
# W8A16's preset is group-wise too, unlike the per-channel W8A16 of many papers.
_add(Scheme("w8a16", "W8A16", 8, 16, "group", 128, True))
_add(Scheme("w8a8", "W8A8", 8, 8, "channel", None, True, activation_strategy="token"))


def get_scheme(name: str) -> Scheme:
    """The scheme called ``name`` (case-insensitive); unknown names raise ``UnknownNameError``."""
    return SCHEMES.get(name.lower())
