"""Assemble the self-contained report page: inline CSS, figures as data URIs, no external URL.

Everything shown is escaped with :func:`html.escape`. A small inline script records on the
``<body>`` how many images decoded (``data-images-ok`` of ``data-images-total``), which lets a
headless browser check the page.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CSS = """
:root { --ink:#1f2328; --muted:#57606a; --line:#d0d7de; --accent:#0072B2; --warn-bg:#fff4e5; --warn:#b35900; }
* { box-sizing: border-box; }
body { margin:0; font-family: "DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif; color:var(--ink);
       background:#f6f8fa; line-height:1.45; font-size:15px; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; background:#fff; min-height:100vh;
       box-shadow: 0 0 0 1px var(--line); }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 2px solid var(--accent); }
h3 { font-size: 16px; margin: 0 0 8px; }
.subtitle { color: var(--muted); margin: 0 0 16px; }
.warnings { background: var(--warn-bg); border-left: 5px solid var(--warn); padding: 10px 16px; margin: 16px 0; }
.warnings h2 { border: none; margin: 0 0 6px; font-size: 16px; color: var(--warn); padding: 0; }
.warnings li { margin: 2px 0; }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; font-size: 13px; margin: 8px 0; }
.meta dt { color: var(--muted); } .meta dd { margin: 0; word-break: break-all; }
details { margin: 6px 0; font-size: 13px; } summary { cursor: pointer; color: var(--accent); }
nav.toc { columns: 2; font-size: 13px; background:#f6f8fa; padding: 10px 16px; border-radius: 6px; margin: 16px 0; }
nav.toc ul { margin: 0; padding-left: 18px; } nav.toc li { break-inside: avoid; margin: 1px 0; }
.cards { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; }
.card h3 { font-size: 14px; margin: 0 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
nav.toc a { color: var(--accent); text-decoration: none; }
figure { margin: 0 0 28px; padding: 14px; border: 1px solid var(--line); border-radius: 6px; break-inside: avoid; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 8px; }
figcaption .files { display: block; margin-top: 4px; font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
.skipped { border: 1px dashed var(--line); padding: 10px 14px; border-radius: 6px; color: var(--muted);
           font-size: 13px; margin: 0 0 20px; }
.table-wrap { overflow-x: auto; margin: 8px 0 24px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); }
th { background: #f6f8fa; text-align: left; font-weight: 600; }
th.group { text-align: center; border-bottom: 1px solid #8c959f; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.txt { text-align: left; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fbfcfd; }
code { font-size: 12px; }
footer { margin-top: 40px; font-size: 12px; color: var(--muted); }
"""

SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-ok', String(ok));
  document.body.setAttribute('data-images-total', String(imgs.length));
});
"""


@dataclass(frozen=True)
class FigureBlock:
    """One figure as the page shows it."""

    name: str
    section: str
    title: str
    caption: str
    svg: bytes
    files: tuple[str, ...]  #: relative paths of the figure's SVG, PNG and CSV


@dataclass(frozen=True)
class SkippedBlock:
    """A figure that could not be drawn, and why."""

    name: str
    section: str
    title: str
    reason: str


def esc(value: Any) -> str:
    """``value`` as escaped text."""
    return html.escape(str(value), quote=True)


def figure_html(block: FigureBlock) -> str:
    """A ``<figure>`` with the SVG as a base64 data URI (isolated, no external reference)."""
    data = base64.b64encode(block.svg).decode("ascii")
    files = " · ".join(esc(f) for f in block.files)
    return (f'<figure id="{esc(block.name)}"><h3>{esc(block.title)}</h3>'
            f'<img alt="{esc(block.title)}" src="data:image/svg+xml;base64,{data}">'
            f'<figcaption>{esc(block.caption)}<span class="files">{files}</span></figcaption></figure>')


def skipped_html(block: SkippedBlock) -> str:
    """The note that replaces a figure that could not be drawn."""
    return (f'<div class="skipped" id="{esc(block.name)}"><strong>{esc(block.title)}</strong> — not shown: '
            f"{esc(block.reason)}</div>")


def _value_html(value: Any) -> str:
    if isinstance(value, dict):
        items = "".join(f"<dt>{esc(k)}</dt><dd>{_value_html(v)}</dd>" for k, v in value.items())
        return f'<dl class="meta">{items}</dl>'
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = list(dict.fromkeys(k for v in value for k in v))
        head = "".join(f"<th>{esc(k)}</th>" for k in keys)
        body = "".join("<tr>" + "".join(f"<td>{esc(_short(v.get(k)))}</td>" for k in keys) + "</tr>" for v in value)
        return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    if isinstance(value, list):
        return esc(", ".join(_short(v) for v in value))
    return esc(_short(value))


def _short(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return "–" if value is None else str(value)


def _git_text(git: Any) -> str | None:
    if isinstance(git, dict):
        commit = git.get("commit")
        if commit is None:
            return None
        dirty = git.get("dirty")
        return f"{commit}" + (" (uncommitted changes)" if dirty else " (clean)" if dirty is False else "")
    return None if git is None else str(git)


def _card(title: str, items: dict[str, Any]) -> str:
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{_value_html(v)}</dd>" for k, v in items.items() if v not in (None, ""))
    return f'<div class="card"><h3>{esc(title)}</h3><dl class="meta">{rows}</dl></div>'


def header_html(meta: dict[str, Any], analysis_dir: str, counts: str) -> str:
    """Title, provenance (from ``analysis.json``) and its warnings, shown prominently."""
    prov = meta.get("provenance") if isinstance(meta.get("provenance"), dict) else {}
    options = meta.get("options") if isinstance(meta.get("options"), dict) else {}
    parts = ["<h1>Quantization and social bias: analysis report</h1>", f'<p class="subtitle">{esc(counts)}</p>']
    warnings = meta.get("warnings") or []
    warnings = [warnings] if isinstance(warnings, str) else list(warnings)
    if warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
        parts.append(f'<section class="warnings" id="warnings"><h2>Warnings ({len(warnings)})</h2>'
                     f"<ul>{items}</ul></section>")
    run = {"results": meta.get("results"), "data": meta.get("data"), "analysis": analysis_dir,
           "recorded at": prov.get("recorded_at"), "ray-bench commit": _git_text(prov.get("git"))}
    parts.append(f'<div class="cards">{_card("Run", run)}{_card("Analysis options", options)}</div>')
    rest = {k: v for k, v in prov.items() if k not in ("recorded_at", "git")}
    if rest:
        parts.append(f"<details><summary>Provenance (packages, machine)</summary>{_value_html(rest)}</details>")
    if meta.get("pairs"):
        parts.append(f"<details><summary>Pairs (variant → base)</summary>{_value_html(meta['pairs'])}</details>")
    if isinstance(meta.get("config"), dict):
        parts.append(f"<details><summary>Analysis config</summary>{_value_html(meta['config'])}</details>")
    return "\n".join(parts)


def toc_html(entries: Sequence[tuple[str, str]]) -> str:
    """Table of contents of (anchor, text) pairs."""
    links = "".join(f'<li><a href="#{esc(a)}">{esc(t)}</a></li>' for a, t in entries)
    return f'<nav class="toc"><ul>{links}</ul></nav>'


def page(title: str, body: Sequence[str]) -> str:
    """The complete HTML document."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><main>\n" + "\n".join(body)
            + f"\n</main><script>{SCRIPT}</script></body></html>\n")
