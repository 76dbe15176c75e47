"""The report's figures: what each shows, which tables it needs, and its caption.

The plotting functions live in ``fig_uncertainty`` (fig 2), ``fig_significance`` (figs 3,
4a, 4b), ``fig_groups`` (figs 4c, 5) and ``fig_text`` (supplement); each takes analysis
tables and returns ``(Figure, plotted frame)``. :data:`FIGURES` lists them in report order.
Captions count what was computed on: rows, questions, datasets, bases and variants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray_bench.report import fig_housing as fh
from ray_bench.report import fig_reference as fr
from ray_bench.report.fig_groups import (
    fig4c_rankings,
    fig5a_question_flips,
    fig5b_groups,
    fig5c_group_across_datasets,
)
from ray_bench.report.fig_significance import (
    fig3a_significant_share,
    fig3b_effect_size,
    fig3c_flip_by_significance,
    fig4a_significant_by_method,
    fig4b_significant_by_base,
    counted_tests,
)
from ray_bench.report.fig_text import figS_text_changes
from ray_bench.report.fig_uncertainty import (
    DIFF_RANGE,
    fig2a_entropy_hist,
    fig2b_entropy_box,
    fig2c_entropy_diff_hist,
)
from ray_bench.report.style import DATASET_KEYS, n_distinct

if TYPE_CHECKING:
    import polars as pl

Frames = dict[str, "pl.DataFrame"]


@dataclass(frozen=True)
class FigureSpec:
    """One report figure: ``build(*tables)`` returns ``(Figure, frame)``; ``caption`` describes it."""

    name: str
    section: str
    title: str
    tables: tuple[str, ...]
    build: Callable[..., tuple[Any, Any]]
    caption: Callable[[Frames, Any, dict], str]


def models_phrase(models: pl.DataFrame) -> str:
    """"B base models, V quantized variants (and C controls)" from the ``models`` table."""
    roles = models["role"].to_list()
    n_b, n_v, n_c = roles.count("base"), roles.count("variant"), roles.count("control")
    text = f"{n_b} base model{'s' * (n_b != 1)}, {n_v} quantized variant{'s' * (n_v != 1)}"
    return text + (f" and {n_c} control{'s' * (n_c != 1)}" if n_c else "")


def questions_in(frames: Frames, units: pl.DataFrame) -> int:
    """Distinct questions (``question_flips`` rows) of the dataset subsets present in ``units``."""
    keys = units.select(DATASET_KEYS).unique()
    return frames["question_flips"].join(keys, on=DATASET_KEYS, how="semi", nulls_equal=True).height


def _cap_2a(f: Frames, data: pl.DataFrame, _o: dict) -> str:
    h = f["entropy_hist"]
    return (f"Density of the base model's normalized entropy H/log₂K (20 bins on [0, 1]) over "
            f"{int(h['count'].sum()):,} question × variant pairs ({questions_in(f, h):,} questions) in "
            f"{n_distinct(data, 'label')} datasets (subsets pooled), split by whether the variant's response changed; "
            f"{models_phrase(f['models'])}.")


def _cap_2b(f: Frames, data: pl.DataFrame, _o: dict) -> str:
    base = data.filter(data["who"] == "base")
    return (f"Boxes: 25th–75th percentile, line: median, triangle: mean, whiskers: 5th–95th percentile of the "
            f"normalized entropy. 'base' counts each question once per base model ({int(base['n'].sum()):,} "
            f"answers); each quantization label pools its variants ({int(data['n'].sum() - base['n'].sum()):,} "
            f"answers); {n_distinct(data, 'who') - (base.height > 0)} quantization labels, {n_distinct(data, 'label')} dataset "
            f"subsets, {questions_in(f, f['entropy_box']):,} questions; {models_phrase(f['models'])}.")


def _cap_2c(f: Frames, data: pl.DataFrame, _o: dict) -> str:
    total = float(data["count"].sum())
    inside = data.filter((data["bin_lo"] >= DIFF_RANGE[0] - 1e-9) & (data["bin_hi"] <= DIFF_RANGE[1] + 1e-9))
    outside = 100 * (1 - float(inside["count"].sum()) / total) if total else 0.0
    return (f"Density of the change of normalized entropy (variant − base) over {int(total):,} question × variant "
            f"pairs ({questions_in(f, f['entropy_diff_hist']):,} questions), {n_distinct(data, 'q_label')} quantization "
            f"labels, {n_distinct(data, 'label')} datasets; {models_phrase(f['models'])}. The x axis is cut at ±0.3: "
            f"{outside:.1f}% of the pairs lie outside.")


def _tests_phrase(f: Frames, o: dict) -> str:
    t = counted_tests(f["significance"])
    med = int(t["n"].median()) if t.height else 0
    return (f"{t.height:,} tests (base × variant × social axis × metric; status 'tested', controls excluded) on "
            f"{n_distinct(t, 'label')} datasets ({questions_in(f, t):,} questions): {n_distinct(t, 'variant')} variants of "
            f"{n_distinct(t, 'base')} base models, median {med:,} questions per test. Paired permutation test "
            f"({o.get('n_permutations', '?')} permutations), Benjamini–Hochberg FDR 5% pooled over all tests.")


def _cap_3a(f: Frames, data: pl.DataFrame, o: dict) -> str:
    return f"{_tests_phrase(f, o)} Bar labels: significant / all tests."


def _cap_3b(f: Frames, data: pl.DataFrame, o: dict) -> str:
    return (f"Cohen's d_z (mean paired difference over its standard deviation) of the {data.height:,} significant "
            f"tests. {_tests_phrase(f, o)}")


def _cap_3c(f: Frames, data: pl.DataFrame, o: dict) -> str:
    return (f"Share of responses that changed, weighted by each test's number of questions "
            f"({int(data['n_questions'].sum()):,} question × variant pairs counted once per test). "
            f"{_tests_phrase(f, o)}")


def _cap_4(f: Frames, data: pl.DataFrame, o: dict, rows: str) -> str:
    return (f"% of tests with a significant change per {rows} and dataset; Avg = unweighted mean over the "
            f"datasets of the row. {_tests_phrase(f, o)}")


def _cap_4c(f: Frames, data: pl.DataFrame, _o: dict) -> str:
    metrics = ", ".join(sorted(set(data["metric"].to_list())))
    return (f"Dense rank of each base model on {metrics} (1 = least biased; models whose 95% bootstrap CIs overlap "
            f"tie) and of its {data['q_label'][0]} variant; {n_distinct(data, 'base')} base models, {n_distinct(data, 'label')} "
            f"dataset subsets shown (at most 6, those with most bases), {questions_in(f, f['rankings']):,} "
            f"questions in the ranked subsets. 'change' = variant rank − base rank.")


def _cap_5a(f: Frames, data: pl.DataFrame, _o: dict) -> str:
    q = f["question_flips"]
    return (f"Per question, the share of its variants whose response changed ({int(q['n_variants'].max() or 0)} "
            f"variants at most), over {q.height:,} questions in {n_distinct(data, 'label')} datasets (subsets pooled); "
            f"{models_phrase(f['models'])}.")


def _cap_5b(f: Frames, data: pl.DataFrame, o: dict) -> str:
    g = data.filter(data["level"] == "all")
    return (f"{data['label'][0]}: bias flips as % of each group's question × variant rows (U→B: unbiased → biased "
            f"part), for the 2 groups with the lowest and the 2 with the highest Δ = U→B − B→U at each level; "
            f"groups with fewer than {o.get('min_group_questions', '?')} questions are left out. Across all "
            f"variants: {int(g['n_questions'].sum()):,} questions, {int(g['n_rows'].sum()):,} rows shown; "
            f"{models_phrase(f['models'])}.")


def _cap_5c(f: Frames, data: pl.DataFrame, _o: dict) -> str:
    return (f"Group '{data['group'][0]}' across all variants: unbiased → biased and biased → unbiased flips as % "
            f"of its question × variant rows, in {data.height} datasets ({int(data['n_questions'].sum()):,} "
            f"questions, {int(data['n_rows'].sum()):,} rows); {models_phrase(f['models'])}.")


def _cap_s(f: Frames, data: pl.DataFrame, _o: dict) -> str:
    t = f["text_changes"].filter(f["text_changes"]["role"] != "control")
    return (f"Means over the generations of {n_distinct(t, 'variant')} variants ({int(data['n'].sum()):,} generation "
            f"pairs, weighted by count), {n_distinct(data, 'q_label')} quantization labels, {n_distinct(data, 'label')} open "
            f"datasets: ROUGE-L F1 and shared word prefix of variant vs base text, change of word count.")


_U, _A, _D, _G = "Uncertainty", "Aggregate metrics", "What drives flipping", "Asymmetric impact"
_SIG = ("significance",)

#: Every figure of the report, in order.
FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("fig2a_entropy_hist", _U, "Fig 2a. Base-model uncertainty of flipped vs unchanged responses",
               ("entropy_hist",), fig2a_entropy_hist, _cap_2a),
    FigureSpec("fig2b_entropy_box", _U, "Fig 2b. Uncertainty before and after quantization",
               ("entropy_box",), fig2b_entropy_box, _cap_2b),
    FigureSpec("fig2c_entropy_diff_hist", _U, "Fig 2c. Change of uncertainty per quantization method",
               ("entropy_diff_hist",), fig2c_entropy_diff_hist, _cap_2c),
    FigureSpec("fig3a_significant_share", _A, "Fig 3a. Significant changes of aggregate bias metrics",
               _SIG, fig3a_significant_share, _cap_3a),
    FigureSpec("fig3b_effect_size", _A, "Fig 3b. Effect sizes of the significant changes",
               _SIG, fig3b_effect_size, _cap_3b),
    FigureSpec("fig3c_flip_by_significance", _A, "Fig 3c. Response flips with and without a significant change",
               _SIG, fig3c_flip_by_significance, _cap_3c),
    FigureSpec("fig4a_significant_by_method", _D, "Fig 4a. Significant changes by quantization method",
               _SIG, fig4a_significant_by_method, lambda f, d, o: _cap_4(f, d, o, "quantization label")),
    FigureSpec("fig4b_significant_by_base", _D, "Fig 4b. Significant changes by base model",
               _SIG, fig4b_significant_by_base, lambda f, d, o: _cap_4(f, d, o, "base model")),
    FigureSpec("fig4c_rankings", _D, "Fig 4c. Bias rankings of the base models before and after quantization",
               ("rankings",), fig4c_rankings, _cap_4c),
    FigureSpec("fig5a_question_flips", _G, "Fig 5a. How flips spread over questions",
               ("question_flips",), fig5a_question_flips, _cap_5a),
    FigureSpec("fig5b_groups", _G, "Fig 5b. Social groups with the most asymmetric bias flips",
               ("groups",), fig5b_groups, _cap_5b),
    FigureSpec("fig5c_group_across_datasets", _G, "Fig 5c. One social group across datasets",
               ("groups",), fig5c_group_across_datasets, _cap_5c),
    FigureSpec("figS_text_changes", "Text changes", "Supplement. Change of generated text",
               ("text_changes",), figS_text_changes, _cap_s),
)

#: Figure names in report order.
FIGURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FIGURES)

_H = "Housing audit"
#: The housing audit's figures (docs/housing.md), drawn after :data:`FIGURES` when the analysis
#: has housing tables; an analysis without them has no housing section at all.
HOUSING_FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("figH1_housing_scores", _H, "Housing 1. Tenant scores per factor level",
               ("housing_levels",), fh.figH1_housing_scores, fh.cap_h1),
    FigureSpec("figH2_housing_heatmaps", _H, "Housing 2. Mean score of factor pairs",
               ("housing_cells",), fh.figH2_housing_heatmaps, fh.cap_h2),
    FigureSpec("figH3_housing_refusals", _H, "Housing 3. Answers without a score per group",
               ("housing_refusals",), fh.figH3_housing_refusals, fh.cap_h3),
    FigureSpec("figH4_housing_gaps", _H, "Housing 4. Counterfactual gaps",
               ("housing_paired",), fh.figH4_housing_gaps, fh.cap_h4),
)
HOUSING_FIGURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in HOUSING_FIGURES)

_R = "Gap to a reference distribution"
#: The gap to a reference distribution (docs/reference-gap.md), drawn when the analysis has its tables.
REFERENCE_FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("figR1_reference_tv", _R, "Fig R1. Gap to the reference per occupation",
               ("reference_gap",), fr.figR1_reference_tv, fr.cap_r1),
    FigureSpec("figR2_signed_gaps", _R, "Fig R2. Over- and under-representation per category",
               ("reference_gap_categories",), fr.figR2_signed_gaps, fr.cap_r2),
    FigureSpec("figR3_pair_change", _R, "Fig R3. Change of the gap under quantization",
               ("reference_gap_pairs",), fr.figR3_pair_change, fr.cap_r3),
)
