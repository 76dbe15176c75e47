"""``ray-bench report``: one self-contained HTML page from an analysis directory.

:func:`write_report` reads the tables written by ``ray-bench analyze`` (docs/analysis.md),
draws every figure of :data:`ray_bench.report.figures.FIGURES`, saves each as SVG and PNG
beside the CSV of what it plots, and writes the HTML page (atomically). The page embeds the
figures as data URIs and its CSS inline: it references no external URL and opens offline.
A figure whose data is empty (or whose optional table is absent) is skipped with a note.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_bench.atomic import atomic_path, write_bytes_atomic
from ray_bench.report.figures import FIGURES, HOUSING_FIGURES, REFERENCE_FIGURES, FigureSpec, models_phrase
from ray_bench.report.load import AnalysisInputs, read_analysis
from ray_bench.report.render import (
    FigureBlock,
    SkippedBlock,
    esc,
    figure_html,
    header_html,
    page,
    skipped_html,
    toc_html,
)
from ray_bench.report.style import NoFigureData, rc_params

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)
PNG_DPI = 150


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote."""

    html: Path  #: the report page
    figures_dir: Path  #: where each figure's SVG, PNG and CSV are
    figures: tuple[str, ...]  #: names of the figures drawn, in page order
    skipped: tuple[tuple[str, str], ...]  #: (figure name, why it was not drawn)
    tables: tuple[str, ...] = ()  #: names of the HTML tables (also saved as ``table_<name>.csv``)


def _save(fig: Any, data: pl.DataFrame, figures_dir: Path, name: str) -> bytes:
    """Write ``<name>.svg``, ``.png`` and ``.csv``; return the SVG bytes."""
    import matplotlib

    with matplotlib.rc_context(rc_params()):
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
        svg = buf.getvalue()
        write_bytes_atomic(figures_dir / f"{name}.svg", svg)
        with atomic_path(figures_dir / f"{name}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=PNG_DPI, facecolor="white")
    with atomic_path(figures_dir / f"{name}.csv") as tmp:
        data.write_csv(tmp)
    return svg


def _debug() -> bool:
    return os.environ.get("RAY_BENCH_DEBUG", "") not in ("", "0")


def _draw(spec: FigureSpec, inputs: AnalysisInputs, figures_dir: Path, rel: Path) -> FigureBlock | SkippedBlock:
    """The figure's block, or why it was skipped."""
    reason = _try_draw(spec, inputs, figures_dir, rel)
    return reason if isinstance(reason, FigureBlock) else SkippedBlock(spec.name, spec.section, spec.title, reason)


def _try_draw(spec: FigureSpec, inputs: AnalysisInputs, figures_dir: Path, rel: Path) -> FigureBlock | str:
    absent = [t for t in spec.tables if t not in inputs.tables]
    if absent:
        return f"the optional table {', '.join(t + '.parquet' for t in absent)} is not in the analysis directory"
    empty = [t for t in spec.tables if inputs.tables[t].height == 0]
    if empty:
        return f"the table {', '.join(t + '.parquet' for t in empty)} has no rows"
    options = inputs.meta.get("options") if isinstance(inputs.meta.get("options"), dict) else {}
    try:
        fig, data = spec.build(*(inputs.tables[t] for t in spec.tables))
        caption = spec.caption(inputs.tables, data, options)
    except NoFigureData as exc:
        return f"{exc} in {', '.join(t + '.parquet' for t in spec.tables)}"
    except Exception as exc:  # one broken figure must not cost the whole report
        if _debug():
            raise
        log.warning("figure %s could not be drawn: %r", spec.name, exc)
        return f"it could not be drawn ({type(exc).__name__}: {exc}); rerun with RAY_BENCH_DEBUG=1 for details"
    svg = _save(fig, data, figures_dir, spec.name)
    files = tuple(os.path.relpath(figures_dir / f"{spec.name}.{ext}", rel) for ext in ("svg", "png", "csv"))
    return FigureBlock(spec.name, spec.section, spec.title, caption, svg, files)


def _tables(inputs: AnalysisInputs, figures_dir: Path) -> list[tuple[str, str, str]]:
    """(name, title, html) of each summary table; each frame is saved as ``table_<name>.csv``."""
    from ray_bench.report import html_tables as ht

    t = inputs.tables
    specs = [
        ("uncertainty", "Flips by the base model's uncertainty (the paper's uncertainty table)",
         lambda: ht.uncertainty_table(t["uncertainty"])),
        ("flips", "Flips per variant and dataset (all social axes): % response flipped / % bias flipped",
         lambda: ht.flips_table(t["flips"])),
        ("significance", "Significance summary per dataset", lambda: ht.significance_table(t["significance"])),
    ]
    # Present only when the run's open answers were judged (docs/analysis.md).
    if "safety" in t:
        specs.append(("safety", "Unsafe open-ended answers per model (Llama Guard)",
                      lambda: ht.safety_table(t["safety"])))
    if "safety_flips" in t:
        specs.append(("safety_flips", "Safety-label flips per variant and open dataset",
                      lambda: ht.safety_flips_table(t["safety_flips"])))
    if "early_stops" in t:  # the run used --stop-when-shifted (docs/audit.md)
        specs.append(("early_stops", "Early stopping: the shift tests of run --stop-when-shifted",
                      lambda: ht.early_stops_table(t["early_stops"])))
    if "housing_refusals" in t:  # the run had Housing answers (docs/housing.md)
        specs += _housing_tables(t)
    if "reference_gap_summary" in t:  # an Occupations prompt set against its reference (docs/reference-gap.md)
        from ray_bench.report.fig_reference import reference_gap_summary_table

        specs.append(("reference_gap_summary", "Gap to the reference distribution",
                      lambda: reference_gap_summary_table(t["reference_gap_summary"])))
    specs.append(("models", "Models", lambda: ht.models_table(t["models"])))
    out = []
    for name, title, build in specs:
        if t[name].height == 0:
            out.append((name, title, '<p class="skipped">No rows in this table.</p>'))
            continue
        text, frame = build()
        with atomic_path(figures_dir / f"table_{name}.csv") as tmp:
            frame.write_csv(tmp)
        out.append((name, title, text))
    return out


def _housing_tables(t: dict[str, pl.DataFrame]) -> list[tuple[str, str, Any]]:
    """The housing audit's table specs (name, title, build), for the tables present."""
    from ray_bench.report import html_housing as hh

    specs = [("housing_refusals", "Housing audit: answers without a score per group",
              lambda: hh.refusals_table(t["housing_refusals"]))]
    if "housing_tests" in t:
        specs.append(("housing_tests", "Housing audit: Kruskal-Wallis and Dunn's post-hoc tests per factor",
                      lambda: hh.tests_table(t["housing_tests"], t.get("housing_dunn"))))
    if "housing_paired" in t:
        specs.append(("housing_paired", "Housing audit: counterfactual pairs (only gender or race changed)",
                      lambda: hh.paired_table(t["housing_paired"])))
    if "housing_quant_gaps" in t:
        specs.append(("housing_quant_gaps", "Housing audit: demographic gaps before and after quantization",
                      lambda: hh.quant_gaps_table(t["housing_quant_gaps"])))
    return specs


def _counts(inputs: AnalysisInputs) -> str:
    """One line: datasets, questions and models of the analysis."""
    q = inputs.tables["question_flips"]
    n_sets = q.select("dataset").n_unique() if q.height else 0
    text = f"{n_sets} datasets, {q.height:,} questions; {models_phrase(inputs.tables['models'])}."
    if "housing_refusals" in inputs.tables:  # the housing audit is analyzed per model, pairs or not
        h = inputs.tables["housing_refusals"]
        n_answers = int(h.filter(h["factor"] == "(all)")["n"].sum()) if h.height else 0
        text += f" Housing audit: {n_answers:,} answers."
    return text


def _meta_for_header(meta: dict[str, Any]) -> dict[str, Any]:
    """``analysis.json`` with ``pairs`` given as rows (model, base, role, ...) when it is a mapping."""
    pairs = meta.get("pairs")
    if isinstance(pairs, dict) and all(isinstance(v, dict) for v in pairs.values()):
        meta = {**meta, "pairs": [{"model": k, **v} for k, v in pairs.items()]}
    return meta


def _body(inputs: AnalysisInputs, blocks: list[FigureBlock | SkippedBlock],
          tables: list[tuple[str, str, str]]) -> list[str]:
    """Header, contents, the figures by section, the tables and the list of skipped figures."""
    body = [header_html(_meta_for_header(inputs.meta), str(inputs.directory), _counts(inputs))]
    toc, sections, section = [], [], None
    for block in blocks:
        if block.section != section:
            section = block.section
            sections.append(f'<h2 id="sec-{esc(block.name)}">{esc(section)}</h2>')
        toc.append((block.name, block.title))
        sections.append(figure_html(block) if isinstance(block, FigureBlock) else skipped_html(block))
    sections.append('<h2 id="tables">Tables</h2>')
    for name, title, text in tables:
        toc.append((f"table-{name}", title))
        sections.append(f'<h3 id="table-{esc(name)}">{esc(title)}</h3>{text}')
    skipped = [b for b in blocks if isinstance(b, SkippedBlock)]
    if skipped:
        items = "".join(f"<li><strong>{esc(b.title)}</strong> (<code>{esc(b.name)}</code>): {esc(b.reason)}</li>"
                        for b in skipped)
        sections.append(f'<h2 id="skipped">Figures not shown ({len(skipped)})</h2><ul>{items}</ul>')
    body.append(toc_html(toc))
    body += sections
    body.append(f"<footer>Written by <code>ray-bench report</code> from {esc(inputs.directory)}. Figures use the "
                "Okabe-Ito colour-blind-safe palette; each figure's SVG, PNG and data CSV are listed under it."
                "</footer>")
    return body


def write_report(analysis_dir: Path, out: Path, figures_dir: Path | None = None) -> ReportResult:
    """Write the HTML report of ``analysis_dir`` to ``out`` and its figures to ``figures_dir``.

    Args:
        analysis_dir: The ``--out`` directory of ``ray-bench analyze``.
        out: The HTML file to write.
        figures_dir: Where to save each figure (SVG, PNG, CSV); default ``<out's folder>/figures``.

    Raises:
        ResultsError: the directory, a required table or ``analysis.json`` is missing or unreadable.
    """
    inputs = read_analysis(analysis_dir)
    out = Path(out)
    figures_dir = Path(figures_dir) if figures_dir is not None else out.parent / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    housing = HOUSING_FIGURES if "housing_levels" in inputs.tables else ()
    reference = REFERENCE_FIGURES if "reference_gap" in inputs.tables else ()
    blocks = [_draw(spec, inputs, figures_dir, out.parent) for spec in (*FIGURES, *housing, *reference)]
    tables = _tables(inputs, figures_dir)
    text = page("ray-bench report", _body(inputs, blocks, tables))
    write_bytes_atomic(out, text.encode("utf-8"))
    drawn = tuple(b.name for b in blocks if isinstance(b, FigureBlock))
    skipped = tuple((b.name, b.reason) for b in blocks if isinstance(b, SkippedBlock))
    return ReportResult(out, figures_dir, drawn, skipped, tuple(name for name, _, _ in tables))
