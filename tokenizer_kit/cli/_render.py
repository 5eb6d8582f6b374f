"""Rich tables for tokenizer metrics (shared by build-codebook and report)."""

from __future__ import annotations

from typing import Any, Sequence

from rich.table import Table

__all__ = ["metrics_table", "build_summary"]


def metrics_table(reports: Sequence[dict[str, Any]], title: str = "tokenizers") -> Table:
    """Tokenizers side by side, one row per metric (the rows of the JSON and HTML reports);
    with two or more, the best value of each ranked row is bold green with a star."""
    from ..evaluation import comparison_cells

    t = Table(title=title)
    t.add_column("metric", style="bold")
    for r in reports:
        t.add_column(str(r["name"]), justify="right")
    for row, values in comparison_cells(reports):
        t.add_row(row.label, *[f"[bold green]{text} *[/]" if best else text for text, best in values])
    return t


def build_summary(report: dict[str, Any], files: Sequence[str]) -> str:
    """One line after a build: items, levels, SID length, policy, collisions resolved, files."""
    sizes = [l["codebook_size"] for l in report["levels"]]
    shape = f"{len(sizes)} levels x {sizes[0]} codes" if len(set(sizes)) == 1 else f"{len(sizes)} levels of {'/'.join(map(str, sizes))} codes"
    head, colliding, wrote = f"{report['name']}: {report['n_items']:,} items", report.get("colliding_items", 0), f"wrote {', '.join(files)}"
    idx = report.get("index")
    if idx is None:
        return (f"{head}, {shape}; SIDs of {len(sizes)} codes, not indexed (--no-index): {colliding:,} items share a SID "
                f"(`tokenizer-kit index` makes them unique); {wrote}")
    extra = idx["sid_length"] - len(sizes)
    how = f" + {extra} disambiguation token" if extra == 1 else (f" + {extra} tokens" if extra else "")
    shared = idx.get("collision_rate_sids", 0.0)
    return (f"{head}; SIDs of {idx['sid_length']} tokens ({shape}{how}), policy {idx['policy']}: {colliding:,} colliding items "
            "made unique" + (f", {shared:.2%} of SIDs still shared" if shared else "") + f"; {wrote}")
