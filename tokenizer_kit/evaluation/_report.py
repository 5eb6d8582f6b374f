"""Reports over one or more tokenizers: JSON dicts and a self-contained HTML page.

A report target is a tokenizer directory or an LC-Rec style ``*.index.json`` (item ->
["<a_1>", "<b_2>", ...]) from another tool, measured with the same yardstick
(reconstruction only where codebooks and embeddings exist).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..build import tokenizer_metrics
from ..errors import InputError
from ._compare import caveats, collision_examples, comparison, detect_sid_levels

__all__ = ["read_index_json", "report_target", "build_report", "REPORT_LEVEL_KEYS"]

REPORT_LEVEL_KEYS = ("codebook_size", "utilization", "entropy_nats", "entropy_bits", "entropy_normalized", "perplexity", "gini")

_TOKEN = re.compile(r"<([A-Za-z]+\d*)_(\d+)>")


# the largest code a level of an imported SID may hold: each code is a token of the model's
# vocabulary and sizes the level's arrays (trie, vocabulary); real codebooks hold 256 to 8,192
MAX_SID_CODE = (1 << 24) - 1


def read_index_json(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """LC-Rec ``*.index.json`` -> (item ids (n,), codes (n, L) int64).

    Each item maps to a list of tokens (or one string of them) ``<a_12>``, ``<b_3>``, ...;
    levels must come in order (a, b, c, ...), codes must be non-negative integers below
    ``MAX_SID_CODE``, every SID must have the same length and no item may be given twice.
    """
    from ..build import level_token
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
            if code > MAX_SID_CODE:
                raise InputError(f"{path}: item {item!r} has code {m.group(2)[:24]} at level {level}; SID codes must be at most "
                                 f"{MAX_SID_CODE} (2^24 - 1: each level is a vocabulary of that many tokens at most); fix the file")
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
    titles: Mapping[str, str] | None = None,
    sid_levels: int | None = None,
):
    """Metrics for one tokenizer directory or ``*.index.json``; with ``return_codes`` also
    the codes (n, L) and codebook sizes, as ``(report, codes, sizes)`` (for HTML plots).

    ``embeddings`` (an :class:`~tokenizer_kit.io.Embeddings`) enables reconstruction for a
    tokenizer directory, matched by item id, per level too; without it the build-time numbers
    are reused. ``codebook_sizes`` applies to an ``*.index.json`` (default: inferred from the
    codes), and so does ``sid_levels``: how many of its levels are SID levels (default:
    detected; a last level that only numbers the items of each prefix is left out of the
    collision numbers). ``titles`` (item id -> title) names the items of the largest SID
    buckets in ``collision_examples``.
    """
    target = Path(target)
    name = name or target.name
    if target.is_dir():
        out, codes, sizes = _report_tokenizer(target, name, embeddings, categories)
    elif target.suffix == ".json":
        out, codes, sizes = _report_index_json(target, name, categories, codebook_sizes, sid_levels)
    elif not target.exists():
        raise InputError(f"report target {target} does not exist; pass a tokenizer directory or an LC-Rec *.index.json file")
    else:
        raise InputError(f"{target}: expected a tokenizer directory or an LC-Rec *.index.json file")
    out["collision_examples"] = collision_examples(out.pop("_ids"), codes, titles)
    return (out, codes, sizes) if return_codes else out


def _report_tokenizer(target: Path, name: str, embeddings, categories):
    """Report, codes and codebook sizes of a tokenizer directory."""
    from ..build import SemanticTokenizer

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
        "input_dim": tok.dim,
        "embedding_source": (tok.info.get("source") if isinstance(tok.info.get("source"), str) else None),
        "sid_levels": tok.levels,
        **m,
        "recon_by_level": None if x is None else _recon_by_level(tok, x),
        "_ids": tok.item_ids,
    }
    if tok.sections:
        out["sections"] = {k: v for k, v in tok.sections.items() if isinstance(v, (dict, list, str, int, float))}
    return out, tok.codes, tok.codebook_sizes


def _recon_by_level(tok, x: np.ndarray) -> list[float] | None:
    """Relative reconstruction error using the first 1, 2, ..., L levels (residual quantizers
    whose decoding is the sum of one codebook vector per level; None for others)."""
    books = getattr(tok.quantizer, "codebooks", None)
    if not isinstance(books, list) or len(books) != tok.levels or tok.method != "rq-kmeans":
        return None
    xp = tok.preprocess(np.asarray(x, np.float32), what="embeddings")
    ss = float((xp.astype(np.float64) ** 2).sum())
    acc = np.zeros_like(xp, dtype=np.float64)
    out = []
    for l, cb in enumerate(books):
        acc += np.asarray(cb, np.float64)[tok.codes[:, l]]
        out.append(float(((xp - acc) ** 2).sum() / ss) if ss > 0 else float("nan"))
    return out


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


def _report_index_json(target: Path, name: str, categories, codebook_sizes, sid_levels: int | None):
    """Report, codes and codebook sizes of another tool's LC-Rec ``*.index.json``, measured on
    its SID levels (given, or detected: a disambiguation last level is left out)."""
    ids, codes = read_index_json(target)
    L = codes.shape[1]
    detected = sid_levels is None
    levels = detect_sid_levels(codes) if detected else int(sid_levels)
    if not 1 <= levels <= L:
        raise InputError(f"{target}: --sid-levels {levels} but the SIDs have {L} levels; give 1..{L}")
    sizes = list(codebook_sizes) if codebook_sizes else [int(codes[:, l].max()) + 1 for l in range(L)]
    if len(sizes) not in (L, levels):
        raise InputError(f"{target}: {L} levels ({levels} SID levels) but {len(sizes)} codebook sizes given")
    sizes = sizes[:levels]
    full = tokenizer_metrics(codes, [int(codes[:, l].max()) + 1 for l in range(L)]) if levels < L else None
    m = tokenizer_metrics(codes[:, :levels], sizes, categories=_categories_for(ids, categories))
    out = {
        "name": name,
        "path": str(target),
        "kind": "index_json",
        "method": "external",
        "codebook_sizes_inferred": codebook_sizes is None,
        "sid_levels": levels,
        "sid_levels_detected": detected,
        "disambiguation_levels": L - levels,
        **m,
        "_ids": ids,
    }
    if full is not None:
        out["collision_rate_all_levels"] = full["collision_rate"]
    return out, codes[:, :levels], sizes


def build_report(targets: Sequence[dict[str, Any]], *, same_embeddings: bool = False) -> dict[str, Any]:
    """The report: each tokenizer's metrics, the side-by-side rows (meaning, values, best)
    and caveats. ``same_embeddings``: reconstruction was measured on one set of vectors."""
    from .._version import __version__

    targets = list(targets)
    return {"package_version": __version__, "tokenizers": targets, "comparison": comparison(targets),
            "caveats": caveats(targets, same_embeddings=same_embeddings)}
