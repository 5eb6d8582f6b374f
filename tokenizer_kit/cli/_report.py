"""``tokenizer-kit report``: metrics of tokenizers (or other tools' *.index.json) side by side."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._common import OutputFormat, cli_command, emit_json, out_console, setup_logging

__all__ = ["register"]


def report(
    targets: List[Path] = typer.Argument(..., help="Tokenizer directories and/or LC-Rec *.index.json files."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json (results on stdout)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write an HTML report with plots."),
    categories: Optional[Path] = typer.Option(None, "--categories", help="Catalogue with a categories column (level-1 NMI)."),
    category_column: str = typer.Option("categories", "--category-column"),
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", help="Embeddings to recompute reconstruction for tokenizer directories."),
    codebook_size: Optional[str] = typer.Option(None, "--codebook-size", help="Codebook sizes for *.index.json (default: max code + 1)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
):
    """Reconstruction, utilization, entropy (nats/bits), collisions and more, per tokenizer."""
    setup_logging(verbose)
    from ..evaluation import build_report, render_html, report_target
    from ..io import item_categories, load_embeddings, read_catalog
    from ..quantizers import parse_codebook_sizes

    cats = item_categories(read_catalog(categories), category_column) if categories is not None else None
    emb = load_embeddings(embeddings) if embeddings is not None else None
    sizes = parse_codebook_sizes(codebook_size) if codebook_size else None
    reports, codes = [], {}
    names: set[str] = set()
    for t in targets:
        name = t.name
        while name in names:
            name = f"{name}'"
        names.add(name)
        r, c, ks = report_target(t, name=name, embeddings=emb, categories=cats, codebook_sizes=sizes, return_codes=True)
        reports.append(r)
        codes[name] = (c, ks)
    rep = build_report(reports)
    if html is not None:
        render_html(rep, html, codes=codes)
        rep["html"] = str(html)
    if fmt == OutputFormat.json:
        emit_json(rep)
    else:
        from ._render import metrics_table

        out_console.print(metrics_table(reports, title="tokenizer report"))
        if html is not None:
            out_console.print(f"HTML report: {html}")


def register(app: typer.Typer) -> None:
    app.command("report")(cli_command(report))
