"""The HTML report: one self-contained page (no network, no scripts) with the tokenizers side
by side (best value per row marked, a line saying what each metric means), caveats, the
pipeline's alignment and retrieval numbers when given, then per tokenizer its plots (drawn by
matplotlib, SVG inlined, with axes) and examples of colliding items."""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..io import atomic_write_bytes
from ._compare import comparison_cells

__all__ = ["render_html"]

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}"
    "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td.help{text-align:left;color:#555;font-size:12px;max-width:420px}th.metric,td.metric,th.help{text-align:left}"
    "td.best{font-weight:bold;background:#e3f4e1}td.best::after{content:' \\2605';color:#2b7a2b}"
    ".caveat{background:#fff6d6;border-left:4px solid #e0b400;padding:6px 10px;margin:6px 0}"
    "figure{display:inline-block;margin:6px;vertical-align:top}figcaption{font-size:12px;color:#444}"
    "section{margin-top:2em}.none{color:#2b7a2b}"
)


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prolog and doctype: inlined in HTML


def _figure(title: str, xlabel: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 2.6), dpi=100)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    return fig, ax


def _code_usage_plot(counts: np.ndarray, level: int) -> str:
    fig, ax = _figure(f"level {level}: items per code, most used first", "code rank", "items")
    y = np.sort(counts)[::-1]
    ax.bar(np.arange(1, len(y) + 1), y, width=1.0, color="#3b6ea8")
    ax.axhline(y.mean(), color="#a8553b", lw=1, ls="--", label=f"uniform ({y.mean():.1f})")
    ax.legend(fontsize=8)
    return _svg(fig)


def _bucket_plot(codes: np.ndarray) -> str:
    _, cnt = np.unique(codes, axis=0, return_counts=True)
    if cnt.max(initial=1) <= 1:
        return "<p class='none'>No collisions: every SID holds one item.</p>"
    hist = np.bincount(cnt)
    sizes = np.flatnonzero(hist)
    fig, ax = _figure("SID bucket sizes", "items sharing a SID", "SIDs (log scale)")
    ax.bar(sizes, hist[sizes], width=0.8, color="#a8553b")
    ax.set_yscale("log")
    return _svg(fig)


def _recon_plot(reports: Sequence[Mapping[str, Any]]) -> str:
    curves = [(r["name"], r["recon_by_level"]) for r in reports if r.get("recon_by_level")]
    if not curves:
        return ""
    fig, ax = _figure("reconstruction by level", "levels used", "relative error")
    for name, ys in curves:
        ax.plot(range(1, len(ys) + 1), ys, marker="o", label=name)
    ax.set_xticks(range(1, max(len(ys) for _, ys in curves) + 1))
    ax.legend(fontsize=8)
    return f"<figure>{_svg(fig)}</figure>"


def _side_by_side(reports: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(r['name']))}</th>" for r in reports)
    body = []
    for row, values in comparison_cells(reports):
        cells = "".join(f"<td{' class=best' if best else ''}>{html.escape(text)}</td>" for text, best in values)
        body.append(f"<tr><td class=metric>{html.escape(row.label)}</td>{cells}<td class=help>{html.escape(row.help)}</td></tr>")
    return (f"<table><tr><th class=metric>metric</th>{head}<th class=help>what it means</th></tr>{''.join(body)}</table>"
            "<p><small>&#9733; best value of the row (lower or higher, as the metric says).</small></p>")


def _examples(r: Mapping[str, Any]) -> str:
    ex = r.get("collision_examples") or []
    if not ex:
        return ""
    rows = "".join(
        f"<tr><td class=metric>{html.escape(e['sid'])}</td><td>{e['size']}</td><td class=help>"
        + "; ".join(html.escape(f"{it['item_id']}" + (f": {it['title']}" if it.get("title") else "")) for it in e["items"])
        + "</td></tr>"
        for e in ex
    )
    return f"<h3>Largest SID buckets</h3><table><tr><th>SID</th><th>items</th><th>some of them</th></tr>{rows}</table>"


def _pipeline(extra: Mapping[str, Any] | None) -> str:
    if not extra:
        return ""
    parts = []
    for title, d in extra.items():
        if isinstance(d, Mapping) and d:
            rows = "".join(f"<tr><td class=metric>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in d.items())
            parts.append(f"<h3>{html.escape(str(title))}</h3><table>{rows}</table>")
    return "<section><h2>Pipeline</h2>" + "".join(parts) + "</section>" if parts else ""


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def render_html(report: dict[str, Any], path: str | Path, *, codes: Mapping[str, tuple[np.ndarray, Sequence[int]]] | None = None,
                extra: Mapping[str, Any] | None = None) -> Path:
    """Write the report page atomically. ``codes``: name -> (codes (n, L) on the SID levels,
    codebook sizes), for the plots; ``extra``: titled tables of pipeline numbers (alignment,
    retrieval) shown after the comparison."""
    reports = report["tokenizers"]
    cav = "".join(f"<p class=caveat>{html.escape(c)}</p>" for c in report.get("caveats") or [])
    sections = []
    for r in reports:
        figs = ""
        if r["name"] in (codes or {}):
            c, sizes = codes[r["name"]]
            figs = "".join(f"<figure>{_code_usage_plot(np.bincount(c[:, l], minlength=k), l + 1)}</figure>" for l, k in enumerate(sizes))
            figs += f"<figure>{_bucket_plot(c)}</figure>"
        sections.append(f"<section><h2>{html.escape(str(r['name']))} <small>({html.escape(str(r.get('method')))}, "
                        f"{html.escape(str(r.get('path', '')))})</small></h2>{figs}{_examples(r)}</section>")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>tokenizer-kit report</title><style>{_CSS}</style></head><body>"
        f"<h1>tokenizer-kit report</h1>{cav}{_side_by_side(reports)}{_recon_plot(reports)}{_pipeline(extra)}{''.join(sections)}"
        f"<footer><small>tokenizer-kit {html.escape(report.get('package_version', ''))}</small></footer></body></html>"
    )
    path = Path(path)
    atomic_write_bytes(path, page.encode())
    return path
