"""What a side-by-side report needs beyond each tokenizer's metrics: which value is best in
each row, a one-line meaning per metric, caveats, an external index's SID levels, and
examples of colliding items.

The metric rows (``ROWS``) are shared by the terminal table, the JSON and the HTML page, so
the three say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..build import sid_string

__all__ = ["Row", "rows_for", "best_of", "cell", "comparison", "comparison_cells", "caveats", "detect_sid_levels", "collision_examples", "METRIC_HELP"]


@dataclass(frozen=True)
class Row:
    key: str  # a report key, or "L{l}.{level key}" for a per-level value
    label: str
    better: str | None  # "min", "max" or None (not ranked)
    fmt: str
    help: str

    def value(self, rep: Mapping[str, Any]) -> Any:
        if self.key.startswith("L") and "." in self.key:
            lvl, k = self.key[1:].split(".", 1)
            levels = rep.get("levels") or []
            i = int(lvl) - 1
            return levels[i].get(k) if i < len(levels) else None
        return rep.get(self.key)


METRIC_HELP = {
    "reconstruction_mse": "mean squared error between an item's embedding and the decoding of its codes, per dimension "
                          "(lower: the codes keep more of the embedding)",
    "reconstruction_relative": "reconstruction error / mean squared norm of the embeddings: scale-free, but only comparable "
                               "within one embedding space",
    "recon_by_level": "relative reconstruction error using the first l levels only (how much each level adds)",
    "collision_rate": "share of items whose SID (on the SID levels, before any collision policy) is shared with another item",
    "unique_sids": "distinct SIDs among the items (higher: fewer items to tell apart by a suffix)",
    "largest_bucket": "most items sharing one SID (a suffix level needs this many codes)",
    "category_nmi": "normalised mutual information between level-1 codes and the catalogue's top category "
                    "(higher: level 1 follows the categories)",
    "build_seconds": "time to fit the codebooks",
    "utilization": "share of the level's K codes that at least one item uses",
    "entropy_nats": "entropy of the level's code usage in nats (ln K at most)",
    "entropy_normalized": "entropy of the level's code usage / ln K (1: every code used equally)",
    "gini": "inequality of the level's code usage (0: equal use, 1: one code takes all)",
}

_TOP = [
    Row("method", "method", None, "s", "how the codes were made"),
    Row("n_items", "items", None, "d", "items with a SID"),
    Row("sid_levels", "SID levels", None, "d", "code levels that carry meaning (an external index's disambiguation level excluded)"),
    Row("reconstruction_mse", "reconstruction MSE", "min", ".6f", METRIC_HELP["reconstruction_mse"]),
    Row("reconstruction_relative", "relative error", "min", ".4f", METRIC_HELP["reconstruction_relative"]),
    Row("collision_rate", "collision rate", "min", ".4f", METRIC_HELP["collision_rate"]),
    Row("unique_sids", "unique SIDs", "max", "d", METRIC_HELP["unique_sids"]),
    Row("largest_bucket", "largest bucket", "min", "d", METRIC_HELP["largest_bucket"]),
    Row("category_nmi", "category NMI (level 1)", "max", ".4f", METRIC_HELP["category_nmi"]),
    Row("build_seconds", "build seconds", "min", ".2f", METRIC_HELP["build_seconds"]),
]


def rows_for(reports: Sequence[Mapping[str, Any]]) -> list[Row]:
    """The rows that apply to ``reports``: a metric row when any report has it, then per level."""
    rows = [r for r in _TOP if any(r.value(rep) is not None for rep in reports)]
    n_levels = max((len(rep.get("levels") or []) for rep in reports), default=0)
    for l in range(1, n_levels + 1):
        rows += [
            Row(f"L{l}.utilization", f"L{l} utilization", "max", ".4f", METRIC_HELP["utilization"]),
            Row(f"L{l}.entropy_nats", f"L{l} entropy (nats)", "max", ".4f", METRIC_HELP["entropy_nats"]),
            Row(f"L{l}.entropy_normalized", f"L{l} entropy / ln K", "max", ".4f", METRIC_HELP["entropy_normalized"]),
            Row(f"L{l}.gini", f"L{l} Gini", "min", ".4f", METRIC_HELP["gini"]),
        ]
    n_recon = max((len(rep.get("recon_by_level") or []) for rep in reports), default=0)
    for l in range(1, n_recon + 1):
        rows.append(Row(f"recon@{l}", f"relative error, levels 1..{l}", "min", ".4f", METRIC_HELP["recon_by_level"]))
    return rows


def _value(row: Row, rep: Mapping[str, Any]) -> Any:
    if row.key.startswith("recon@"):
        per = rep.get("recon_by_level") or []
        i = int(row.key[6:]) - 1
        return per[i] if i < len(per) else None
    return row.value(rep)


def best_of(row: Row, reports: Sequence[Mapping[str, Any]]) -> set[str]:
    """Names of the reports holding the best value of ``row`` (ties included); none when the
    row is not ranked or fewer than two reports have a value."""
    if row.better is None:
        return set()
    vals = {rep["name"]: _value(row, rep) for rep in reports}
    vals = {k: float(v) for k, v in vals.items() if isinstance(v, (int, float)) and np.isfinite(v)}
    if len(vals) < 2 or len(set(vals.values())) == 1:
        return set()
    target = min(vals.values()) if row.better == "min" else max(vals.values())
    return {k for k, v in vals.items() if np.isclose(v, target, rtol=1e-9, atol=0)}


def cell(row: Row, rep: Mapping[str, Any]) -> str:
    v = _value(row, rep)
    if v is None:
        return "n/a"
    if row.fmt == "s":
        return str(v)
    if row.fmt == "d":
        return f"{int(v):,}"
    return format(float(v), row.fmt)


def comparison_cells(reports: Sequence[Mapping[str, Any]]) -> list[tuple[Row, list[tuple[str, bool]]]]:
    """The side-by-side table for a renderer (terminal, HTML): per row, each report's value as
    text and whether it is the row's best (ties included)."""
    out = []
    for row in rows_for(reports):
        best = best_of(row, reports)
        out.append((row, [(cell(row, rep), rep["name"] in best) for rep in reports]))
    return out


def comparison(reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The side-by-side table as JSON rows: label, meaning, value per tokenizer, best names."""
    return [{"metric": r.key, "label": r.label, "help": r.help, "better": r.better,
             "values": {rep["name"]: _value(r, rep) for rep in reports}, "best": sorted(best_of(r, reports))}
            for r in rows_for(reports)]


def caveats(reports: Sequence[Mapping[str, Any]], *, same_embeddings: bool) -> list[str]:
    """Warnings a reader needs before comparing the rows."""
    out = []
    with_recon = [r for r in reports if r.get("reconstruction_mse") is not None]
    spaces = {(r.get("input_dim"), r.get("embedding_source")) for r in with_recon}
    if not same_embeddings and len(spaces) > 1:
        names = ", ".join(f"{r['name']} (d={r.get('input_dim')}, {r.get('embedding_source') or 'source unknown'})" for r in with_recon)
        out.append(f"reconstruction errors come from different embedding spaces: {names}; compare them within one space "
                   "only, or pass --embeddings to measure every tokenizer on the same vectors")
    for r in reports:
        if r.get("disambiguation_levels"):
            out.append(f"{r['name']}: its last {r['disambiguation_levels']} level(s) only number the items within a prefix "
                       f"(a disambiguation level); collisions are measured on the first {r['sid_levels']} levels "
                       f"(on all levels: {r.get('collision_rate_all_levels', 0):.4f}); set --sid-levels to override")
    return out


def detect_sid_levels(codes: np.ndarray) -> int:
    """How many levels of another tool's codes are SID levels: the last level is a
    disambiguation level when, within every group of items sharing the other levels, it
    numbers them 0, 1, 2, ... (and some group has two or more items)."""
    n, L = codes.shape
    if L < 2 or n < 2:
        return L
    order = np.lexsort(codes[:, ::-1].T)  # by level 1, then 2, ...
    c = codes[order]
    new_group = np.ones(n, bool)
    new_group[1:] = (c[1:, : L - 1] != c[:-1, : L - 1]).any(1)
    starts = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    rank = np.arange(n) - starts
    if (c[:, L - 1] == rank).all() and not new_group.all():
        return L - 1
    return L


def collision_examples(ids: np.ndarray, codes: np.ndarray, titles: Mapping[str, str] | None, *, buckets: int = 3,
                       per_bucket: int = 5) -> list[dict[str, Any]]:
    """The largest SID buckets: the SID, its size and a few of its items (with titles)."""
    if not len(codes):
        return []
    uniq, inv, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    out = []
    for b in np.argsort(-counts, kind="stable")[:buckets]:
        if counts[b] < 2:
            break
        rows = np.flatnonzero(inv == b)[:per_bucket]
        items = [{"item_id": ids[r].item() if hasattr(ids[r], "item") else ids[r],
                  "title": None if titles is None else titles.get(str(ids[r]))} for r in rows]
        out.append({"sid": sid_string(uniq[b].tolist()), "size": int(counts[b]), "items": items})
    return out
