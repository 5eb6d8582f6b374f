"""Reports over one or more tokenizers: JSON dicts and a self-contained HTML page.

A report target is a tokenizer directory or an LC-Rec style ``*.index.json`` (item ->
["<a_1>", "<b_2>", ...]) from another tool, measured with the same yardstick
(reconstruction only where codebooks and embeddings exist).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..io import atomic_write_bytes
from .._metrics import tokenizer_metrics

__all__ = ["read_index_json", "report_target", "build_report", "render_html", "REPORT_LEVEL_KEYS"]

REPORT_LEVEL_KEYS = ("codebook_size", "utilization", "entropy_nats", "entropy_bits", "entropy_normalized", "perplexity", "gini")

_TOKEN = re.compile(r"<([A-Za-z]+\d*)_(\d+)>")


def read_index_json(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """LC-Rec ``*.index.json`` -> (item ids (n,), codes (n, L) int64).

    Each item maps to a list of tokens (or one string of them) ``<a_12>``, ``<b_3>``, ...;
    levels must come in order (a, b, c, ...), codes must be non-negative integers that fit
    in int64, every SID must have the same length and no item may be given twice.
    """
    from .._tokenizer import level_token
    from ..io import read_json

    path = Path(path)
    data = read_json(path, "index file")
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected a non-empty JSON object of item id -> list of SID tokens")
    ids, rows = [], []
    length = None
    for item, toks in data.items():
        if isinstance(toks, str):
            toks = re.findall(r"<[^<>]*>", toks)
        if not isinstance(toks, list):
            raise InputError(f"{path}: item {item!r} maps to {type(toks).__name__}; expected a list of tokens")
        codes = []
        for level, t in enumerate(toks):
            m = _TOKEN.fullmatch(str(t).strip())
            if not m:
                raise InputError(f"{path}: item {item!r} has token {t!r}; expected tokens like '<a_12>' (a non-negative code)")
            want = level_token(level, 0).rpartition("_")[0][1:]
            if m.group(1) != want:
                raise InputError(f"{path}: item {item!r} has token {t!r} at level {level}; levels must come in order, expected <{want}_N>")
            code = int(m.group(2))
            if code >= 2**63:
                raise InputError(f"{path}: item {item!r} has code {m.group(2)[:24]} at level {level}, too large for int64; codes must be below 2^63")
            codes.append(code)
        if length is None:
            length = len(codes)
        if len(codes) != length or length == 0:
            raise InputError(
                f"{path}: item {item!r} has {len(codes)} tokens, others {length}; all SIDs must have the same length (at least 1)"
            )
        ids.append(str(item))
        rows.append(codes)
    return np.asarray(ids, dtype=object), np.asarray(rows, dtype=np.int64)


def _categories_for(ids: np.ndarray, categories: Mapping[str, str] | None) -> list[str | None] | None:
    if categories is None:
        return None
    return [categories.get(str(i)) for i in ids.tolist()]


def report_target(
    target: str | Path,
    *,
    name: str | None = None,
    embeddings=None,
    categories: Mapping[str, str] | None = None,
    codebook_sizes: Sequence[int] | None = None,
    return_codes: bool = False,
):
    """Metrics for one tokenizer directory or ``*.index.json``; with ``return_codes`` also
    the codes (n, L) and codebook sizes, as ``(report, codes, sizes)`` (for HTML plots).

    ``embeddings`` (an :class:`~tokenizer_kit.io.Embeddings`) enables reconstruction for a
    tokenizer directory, matched by item id; without it the build-time numbers are reused.
    ``codebook_sizes`` applies to an ``*.index.json`` (default: inferred from the codes).
    """
    target = Path(target)
    name = name or target.name
    if target.is_dir():
        out, codes, sizes = _report_tokenizer(target, name, embeddings, categories)
    elif target.suffix == ".json":
        out, codes, sizes = _report_index_json(target, name, categories, codebook_sizes)
    elif not target.exists():
        raise InputError(f"report target {target} does not exist; pass a tokenizer directory or an LC-Rec *.index.json file")
    else:
        raise InputError(f"{target}: expected a tokenizer directory or an LC-Rec *.index.json file")
    return (out, codes, sizes) if return_codes else out


def _report_tokenizer(target: Path, name: str, embeddings, categories):
    """Report, codes and codebook sizes of a tokenizer directory."""
    from .._tokenizer import SemanticTokenizer

    tok = SemanticTokenizer.from_pretrained(target)
    if tok.codes is None:
        raise InputError(f"{target}: tokenizer holds no indexed items (no sids.parquet)")
    if embeddings is not None and embeddings.dim != tok.dim:
        raise InputError(f"the embeddings have dimension {embeddings.dim}, the tokenizer {target} expects {tok.dim}; "
                         "pass the embeddings the tokenizer was built on")
    x = None if embeddings is None else _vectors_of(tok.item_ids, embeddings)
    m = tok.evaluate(x, categories=_categories_for(tok.item_ids, categories))
    if x is None:
        for k in ("reconstruction_mse", "reconstruction_relative"):
            m[k] = tok.metrics.get(k)
    out = {
        "name": name,
        "path": str(target),
        "kind": "tokenizer",
        "method": tok.method,
        "config": tok.quantizer.config_dict(),
        "build_seconds": tok.info.get("fit_seconds"),
        **m,
    }
    if tok.sections:
        out["sections"] = {k: v for k, v in tok.sections.items() if isinstance(v, (dict, list, str, int, float))}
    return out, tok.codes, tok.codebook_sizes


def _vectors_of(item_ids: np.ndarray, embeddings) -> np.ndarray:
    """The rows of ``embeddings`` for ``item_ids`` (n, d), matched by id; every item must be there."""
    pos = {str(i): r for r, i in enumerate(embeddings.ids.tolist())}
    rows = [pos.get(str(i)) for i in item_ids.tolist()]
    missing = sum(r is None for r in rows)
    if missing:
        raise InputError(
            f"{missing} of {len(rows)} tokenized items are missing from the embeddings given; "
            "pass the embeddings the tokenizer was built on"
        )
    return np.asarray(embeddings.vectors)[np.asarray(rows)]


def _report_index_json(target: Path, name: str, categories, codebook_sizes):
    """Report, codes and codebook sizes of another tool's LC-Rec ``*.index.json``."""
    ids, codes = read_index_json(target)
    sizes = list(codebook_sizes) if codebook_sizes else [int(codes[:, l].max()) + 1 for l in range(codes.shape[1])]
    if len(sizes) != codes.shape[1]:
        raise InputError(f"{target}: {codes.shape[1]} levels but {len(sizes)} codebook sizes given")
    m = tokenizer_metrics(codes, sizes, categories=_categories_for(ids, categories))
    out = {
        "name": name,
        "path": str(target),
        "kind": "index_json",
        "method": "external",
        "codebook_sizes_inferred": codebook_sizes is None,
        **m,
    }
    return out, codes, sizes


def build_report(targets: Sequence[dict[str, Any]]) -> dict[str, Any]:
    from .._version import __version__

    return {"package_version": __version__, "tokenizers": list(targets)}


# ---- HTML ---------------------------------------------------------------------------------
def _svg_bars(values: Sequence[float], *, width=520, height=140, color="#3b6ea8", title="") -> str:
    vals = np.asarray(values, dtype=float)
    if vals.size == 0:
        return ""
    top = float(vals.max()) or 1.0
    n = len(vals)
    bw = width / n
    bars = "".join(
        f'<rect x="{i * bw:.2f}" y="{height - v / top * (height - 14):.2f}" width="{max(bw - (0.5 if bw > 2 else 0), 0.3):.2f}" '
        f'height="{v / top * (height - 14):.2f}" fill="{color}"/>'
        for i, v in enumerate(vals)
    )
    return (
        f'<figure><figcaption>{html.escape(title)}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 14}" role="img">'
        f'<rect width="{width}" height="{height}" fill="#f6f7f9"/>{bars}'
        f'<text x="0" y="{height + 12}" font-size="10">max {top:g}</text></svg></figure>'
    )


def render_html(report: dict[str, Any], path: str | Path, *, codes: Mapping[str, tuple[np.ndarray, Sequence[int]]] | None = None) -> Path:
    """Write a self-contained HTML report (tables + SVG plots) atomically.

    ``codes`` maps a tokenizer's name to its (codes (n, L), codebook sizes) for the plots:
    items per code (sorted) at each level, and the distribution of SID bucket sizes.
    """
    code_counts: dict[str, list[np.ndarray]] = {}
    bucket_sizes: dict[str, np.ndarray] = {}
    for nm, (c, sizes) in (codes or {}).items():
        code_counts[nm] = [np.bincount(c[:, l], minlength=k) for l, k in enumerate(sizes)]
        _, cnt = np.unique(c, axis=0, return_counts=True)
        bucket_sizes[nm] = cnt
    rows = []
    for t in report["tokenizers"]:
        lv = "".join(
            f"<tr><td>{i + 1}</td><td>{l['codebook_size']}</td><td>{l['utilization']:.4f}</td><td>{l['entropy_nats']:.4f}</td>"
            f"<td>{l['entropy_normalized']:.4f}</td><td>{l['perplexity']:.1f}</td><td>{l['gini']:.4f}</td></tr>"
            for i, l in enumerate(t["levels"])
        )
        rec = t.get("reconstruction_mse")
        rel = t.get("reconstruction_relative")
        plots = ""
        for i, counts in enumerate(code_counts.get(t["name"], [])):
            plots += _svg_bars(np.sort(counts)[::-1], title=f"level {i + 1}: items per code, sorted")
        if t["name"] in bucket_sizes:
            bs = np.asarray(bucket_sizes[t["name"]])
            hist = np.bincount(bs)[1:]
            plots += _svg_bars(hist, color="#a8553b", title="SID bucket sizes (count of SIDs holding 1, 2, ... items)")
        nmi = t.get("category_nmi")
        rows.append(
            f"<section><h2>{html.escape(t['name'])} <small>({html.escape(str(t.get('method')))})</small></h2>"
            f"<p>items {t['n_items']} &middot; reconstruction MSE {'n/a' if rec is None else f'{rec:.6f}'} &middot; relative "
            f"{'n/a' if rel is None else f'{rel:.4f}'} &middot; collision rate {t['collision_rate']:.4f} &middot; unique SIDs "
            f"{t['unique_sids']} &middot; largest bucket {t['largest_bucket']}"
            + ("" if nmi is None else f" &middot; category NMI {nmi:.4f}")
            + "</p><table><tr><th>level</th><th>K</th><th>utilization</th><th>entropy (nats)</th><th>entropy / ln K</th>"
            f"<th>perplexity</th><th>Gini</th></tr>{lv}</table>{plots}</section>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>tokenizer-kit report</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}figure{display:inline-block;margin:6px}"
        "figcaption{font-size:12px;color:#444}</style></head><body><h1>tokenizer-kit report</h1>"
        + "".join(rows)
        + f"<footer><small>tokenizer-kit {html.escape(report.get('package_version', ''))}</small></footer></body></html>"
    )
    path = Path(path)
    atomic_write_bytes(path, page.encode())
    return path
