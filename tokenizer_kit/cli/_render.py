"""Rich tables for tokenizer metrics (shared by build-codebook and report)."""

from __future__ import annotations

from typing import Any, Sequence

from rich.table import Table

__all__ = ["metrics_table", "levels_table"]


def _f(v, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def metrics_table(reports: Sequence[dict[str, Any]], title: str = "tokenizers") -> Table:
    t = Table(title=title)
    t.add_column("metric", style="bold")
    for r in reports:
        t.add_column(str(r["name"]), justify="right")
    rows = [
        ("method", lambda r: str(r.get("method"))),
        ("items", lambda r: str(r["n_items"])),
        ("reconstruction MSE", lambda r: _f(r.get("reconstruction_mse"), ".6f")),
        ("relative error", lambda r: _f(r.get("reconstruction_relative"), ".4f")),
        ("collision rate", lambda r: _f(r.get("collision_rate"), ".4f")),
        ("unique SIDs", lambda r: str(r.get("unique_sids"))),
        ("largest bucket", lambda r: str(r.get("largest_bucket"))),
    ]
    if any(r.get("category_nmi") is not None for r in reports):
        rows.append(("category NMI (level 1)", lambda r: _f(r.get("category_nmi"), ".4f")))
    if any(r.get("build_seconds") is not None for r in reports):
        rows.append(("build seconds", lambda r: _f(r.get("build_seconds"), ".2f")))
    nlev = max(len(r["levels"]) for r in reports)
    for l in range(nlev):
        def lv(key, fmt, l=l):
            return lambda r: _f(r["levels"][l][key], fmt) if l < len(r["levels"]) else ""
        rows += [
            (f"L{l + 1} utilization", lv("utilization", ".4f")),
            (f"L{l + 1} entropy (nats)", lv("entropy_nats", ".4f")),
            (f"L{l + 1} entropy / ln K", lv("entropy_normalized", ".4f")),
            (f"L{l + 1} Gini", lv("gini", ".4f")),
        ]
    for name, fn in rows:
        t.add_row(name, *[fn(r) for r in reports])
    return t


def levels_table(report: dict[str, Any]) -> Table:
    t = Table(title=f"{report['name']}: per level")
    for c in ("level", "K", "used", "utilization", "entropy (nats)", "entropy (bits)", "/ ln K", "perplexity", "Gini"):
        t.add_column(c, justify="right")
    for i, l in enumerate(report["levels"]):
        t.add_row(
            str(i + 1), str(l["codebook_size"]), str(l["used_codes"]), f"{l['utilization']:.4f}", f"{l['entropy_nats']:.4f}",
            f"{l['entropy_bits']:.4f}", f"{l['entropy_normalized']:.4f}", f"{l['perplexity']:.1f}", f"{l['gini']:.4f}",
        )
    return t
