"""Rich tables for tokenizer metrics (shared by build-codebook and report)."""

from __future__ import annotations

from typing import Any, Sequence

from rich.table import Table

__all__ = ["metrics_table", "levels_table"]


def metrics_table(reports: Sequence[dict[str, Any]], title: str = "tokenizers") -> Table:
    """Tokenizers side by side, one row per metric (the rows of the JSON and HTML reports);
    with two or more, the best value of each ranked row is bold green with a star."""
    from ..evaluation._compare import best_of, cell, rows_for

    t = Table(title=title)
    t.add_column("metric", style="bold")
    for r in reports:
        t.add_column(str(r["name"]), justify="right")
    for row in rows_for(reports):
        best = best_of(row, reports)
        t.add_row(row.label, *[f"[bold green]{cell(row, r)} *[/]" if r["name"] in best else cell(row, r) for r in reports])
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
