"""Who is compared with whom: each variant's own base, its quantization metadata, controls.

Pairing rules, first match wins for each model:

1. ``controls`` (``--control NAME=BASE``): the model is a *control* of ``BASE``, the same
   checkpoint scored again (another batch order, engine or dtype); its flips measure
   numerical noise, not quantization.
2. ``pairs`` (``--pair VARIANT=BASE`` or ``pairs:`` in YAML).
3. The variant's quantization card (``base_model``: matched by path, then by name).
4. ``base`` (``--base NAME``): every other model is a variant of it.
5. The reference's naming, ``<base>-[lc-][smooth-]<method>-<scheme>``, when ``<base>`` is a
   model of the run.

A model that is nobody's variant and is some variant's base is a *base*; a model that is
neither is reported as unpaired and left out. Metadata (method, scheme, bits, SmoothQuant)
comes from the card, else from the name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from ray_bench.errors import AnalysisError

#: How a model was scored; a variant that differs from its base here is warned about.
_SCORING_FIELDS = ("engine", "dtype", "device", "temperature", "seed", "system_prompt")
_NAME = re.compile(
    r"^(?P<base>.+?)(?:-(?:lc|hf))?-(?P<smooth>smooth(?:quant)?-)?(?P<method>rtn|gptq|awq)-(?P<scheme>w\d+a\d+)$"
)
_SCHEME = re.compile(r"^w(?P<w>\d+)a(?P<a>\d+)$")

MODEL_COLUMNS = {
    "model": pl.String, "base": pl.String, "role": pl.String, "method": pl.String, "scheme": pl.String,
    "w_bits": pl.Int32, "a_bits": pl.Int32, "smoothquant": pl.Boolean, "q_label": pl.String,
    "pair_source": pl.String, "engine": pl.String, "dtype": pl.String, "device": pl.String,
    "temperature": pl.Float64, "seed": pl.Int64, "system_prompt": pl.String, "activation_quantization": pl.String,
}


def q_label(method: str | None, scheme: str | None, smoothquant: bool) -> str:
    """The paper's label of a quantization: ``RTN W4A16``, ``RTN W4A16 + SQ``, ..."""
    if not method:
        return "unknown"
    core = method.removeprefix("smoothquant-").upper()
    label = f"{core} {scheme.upper()}" if scheme else core
    return f"{label} + SQ" if smoothquant else label


def _quant_meta(name: str, card: Mapping[str, Any] | None) -> dict[str, Any]:
    method = scheme = None
    if card:
        method, scheme = card.get("method"), card.get("scheme")
    else:
        match = _NAME.match(name)
        if match:
            method = ("smoothquant-" if match["smooth"] else "") + match["method"]
            scheme = match["scheme"]
    smooth = bool(method and method.startswith("smoothquant"))
    bits = _SCHEME.match(scheme or "")
    return {
        "method": method, "scheme": scheme, "smoothquant": smooth,
        "w_bits": int(bits["w"]) if bits else None, "a_bits": int(bits["a"]) if bits else None,
        "q_label": q_label(method, scheme, smooth),
    }


def _card_base(card: Mapping[str, Any] | None, settings: Mapping[str, Mapping[str, Any]]) -> str | None:
    base = (card or {}).get("base_model") or {}
    if base.get("path"):
        want = Path(str(base["path"])).resolve()
        for name, info in settings.items():
            if info.get("path") and Path(str(info["path"])).resolve() == want:
                return name
    name = base.get("name")
    return name if name in settings else None


def _parse_assignments(items: Mapping[str, str] | None, models: set[str], what: str) -> dict[str, str]:
    out = dict(items or {})
    for variant, base in out.items():
        for name in (variant, base):
            if name not in models:
                raise AnalysisError(
                    f"{what} {variant}={base}: model {name!r} has no results",
                    hint=f"Models in the results: {', '.join(sorted(models))}.",
                )
        if variant == base:
            raise AnalysisError(f"{what} {variant}={base} pairs a model with itself")
    return out


def resolve_pairs(
    settings: Mapping[str, Mapping[str, Any]],
    *,
    pairs: Mapping[str, str] | None = None,
    base: str | None = None,
    controls: Mapping[str, str] | None = None,
    allow_none: bool = False,
) -> dict[str, tuple[str, str]]:
    """Map every paired model to ``(base, pair_source)``.

    Args:
        settings: Per model, what :func:`ray_bench.results.model_settings` returns (only models with results).
        pairs: Explicit ``variant -> base``.
        base: One base for every model not paired otherwise.
        controls: ``control -> base``.
        allow_none: Return ``{}`` when no model could be paired (the caller decides: :func:`no_pair_error`).

    Raises:
        AnalysisError: a named model has no results, or (without ``allow_none``) no model could be paired.
    """
    names = set(settings)
    if base is not None and base not in names:
        raise AnalysisError(f"base model {base!r} has no results", hint=f"Models in the results: {', '.join(sorted(names))}.")
    ctrl = _parse_assignments(controls, names, "--control")
    explicit = _parse_assignments(pairs, names, "--pair")
    out: dict[str, tuple[str, str]] = {}
    for name in sorted(names):
        card = settings[name].get("quantization_card")
        by_name = _NAME.match(name)
        if name in ctrl:
            out[name] = (ctrl[name], "control")
        elif name in explicit:
            out[name] = (explicit[name], "pair")
        elif (card_base := _card_base(card, settings)) is not None and card_base != name:
            out[name] = (card_base, "card")
        elif base is not None and name != base:
            out[name] = (base, "base-option")
        elif by_name and by_name["base"] in names:
            out[name] = (by_name["base"], "name")
    bases = {b for b, _ in out.values()}
    chained = sorted(v for v in out if v in bases)
    if chained:
        raise AnalysisError(
            f"model {chained[0]!r} is paired as a variant and also serves as a base",
            hint="Pair each variant with an unquantized base (--pair VARIANT=BASE).",
        )
    if not out and not allow_none:
        raise no_pair_error(names)
    return out


def no_pair_error(names: Iterable[str]) -> AnalysisError:
    """The error of a run in which no model could be paired with a base."""
    return AnalysisError(
        f"no model could be paired with a base among {', '.join(sorted(names))}",
        hint="Pass --base NAME, or --pair VARIANT=BASE for each variant.",
    )


def model_table(
    settings: Mapping[str, Mapping[str, Any]], pairing: Mapping[str, tuple[str, str]], standalone: Iterable[str] = ()
) -> pl.DataFrame:
    """One row per base, variant and control (columns :data:`MODEL_COLUMNS`); ``standalone`` models
    are listed as bases too, though nothing is paired with them."""
    bases = {b for b, _ in pairing.values()} | set(standalone)
    rows = []
    for name in sorted(bases | set(pairing)):
        info = settings.get(name, {})
        row: dict[str, Any] = {k: info.get(k) for k in _SCORING_FIELDS}
        row["model"] = name
        row["activation_quantization"] = info.get("activation_quantization")
        if name in pairing:
            base, source = pairing[name]
            role = "control" if source == "control" else "variant"
            meta = _quant_meta(name, info.get("quantization_card")) if role == "variant" else {"q_label": "control"}
            row.update(base=base, role=role, pair_source=source, **meta)
        else:
            row.update(base=name, role="base", q_label="base", smoothquant=False)
        rows.append(row)
    return pl.DataFrame(rows, schema=MODEL_COLUMNS)


def unpaired_model_table(settings: Mapping[str, Mapping[str, Any]]) -> pl.DataFrame:
    """Every model as a base of its own (a run without variants, e.g. a housing audit of one model)."""
    return model_table(settings, {}, standalone=settings)


def scoring_warnings(models: pl.DataFrame) -> list[str]:
    """One line per (variant, field) where a variant was scored differently from its base."""
    by_name = {row["model"]: row for row in models.iter_rows(named=True)}
    warnings = []
    for row in models.filter(pl.col("role") != "base").iter_rows(named=True):
        base = by_name[row["base"]]
        for key in _SCORING_FIELDS:
            if row[key] != base[key]:
                what = "expected for a control" if row["role"] == "control" else "its flips mix quantization with this"
                warnings.append(
                    f"{row['model']} was scored with {key}={row[key]!r} but its base {row['base']} with "
                    f"{key}={base[key]!r} ({what})"
                )
    return warnings + _activation_warnings(models)


def _activation_warnings(models: pl.DataFrame) -> list[str]:
    """Where W8A8 numbers depend on how the engine quantized activations (docs/engines-vllm.md)."""
    w8a8 = models.filter((pl.col("role") == "variant") & (pl.col("a_bits") == 8))
    warnings = [
        f"{row['model']} (W8A8) was scored with {row['activation_quantization']!r}: a deployed int8 kernel "
        "quantizes activations with scale absmax/127, so its flips are not the deployed model's"
        for row in w8a8.iter_rows(named=True)
        if (row["activation_quantization"] or "").startswith("compressed-tensors")
    ]
    engines = sorted({e for e in w8a8.get_column("engine").to_list() if e})
    if len(engines) > 1:
        warnings.append(
            f"W8A8 variants were scored with different engines ({', '.join(engines)}): the int8 GEMMs round "
            "differently (about 1e-3 nats per choice), so compare W8A8 variants scored by one engine"
        )
    return warnings


def coverage_warnings(results: pl.LazyFrame, paired: pl.DataFrame, models: pl.DataFrame) -> list[str]:
    """One line per (variant, dataset) whose pairs leave questions of either model out.

    A variant is compared with its base only on the questions both answered without an
    error; anything else is dropped from every table, and this says how many and why.

    Args:
        results: Every result row (``model``, ``dataset``, ``question_id``).
        paired: The per-question pairs (``variant``, ``dataset``), the ``rows`` table.
        models: The model table.

    The per-model audits (Housing, Occupations) are analyzed by their own tables, not through
    these pairs: an unjudged run of them leaves nothing "out".
    """
    from ray_bench.datasets.specs import DESIGN_DATASETS

    audits = sorted({DESIGN_DATASETS.get(name).family for name in DESIGN_DATASETS.names()})
    results = results.filter(~pl.col("dataset").is_in(audits))
    have = results.group_by("model", "dataset").agg(pl.col("question_id").n_unique().alias("n")).collect()
    counts = {(r["model"], r["dataset"]): r["n"] for r in have.iter_rows(named=True)}
    got = paired.group_by("variant", "dataset").agg(pl.len().alias("n")) if paired.height else None
    paired_counts = {(r["variant"], r["dataset"]): r["n"] for r in got.iter_rows(named=True)} if got is not None else {}
    warnings = []
    for row in models.filter(pl.col("role") != "base").iter_rows(named=True):
        variant, base = row["model"], row["base"]
        for dataset in sorted({d for (m, d) in counts if m in (variant, base)}):
            n_var, n_base = counts.get((variant, dataset), 0), counts.get((base, dataset), 0)
            n = paired_counts.get((variant, dataset), 0)
            if n < max(n_var, n_base):
                warnings.append(
                    f"{variant} vs {base} on {dataset}: {n} question(s) paired; left out {n_base - n} of the "
                    f"base's {n_base} and {n_var - n} of the variant's {n_var} (not answered by the other model, "
                    "an error row, or an open answer the judge did not label)"
                )
    return warnings
