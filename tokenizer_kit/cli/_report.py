"""``tokenizer-kit report``: metrics of tokenizers (or other tools' *.index.json) side by side."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..pipeline import stages
from ..pipeline._verb_configs import ReportConfig
from ._common import OutputFormat, cli_command, emit_json, out_console
from ._options import settings_options

__all__ = ["register"]


def report(
    targets: List[Path] = typer.Argument(..., help="Tokenizer directories and/or LC-Rec *.index.json files."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json (results on stdout)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write an HTML report with plots."),
    categories: Optional[Path] = typer.Option(None, "--categories", help="Catalogue with a categories column (level-1 NMI)."),
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", help="Embeddings to recompute reconstruction for tokenizer directories."),
    cfg: ReportConfig = None,
):
    """Reconstruction, utilization, entropy (nats/bits), collisions and more, per tokenizer."""
    rep = stages.report(targets, cfg, categories=categories, embeddings=embeddings, html=html)
    if fmt == OutputFormat.json:
        emit_json(rep)
        return
    from ._render import metrics_table

    out_console.print(metrics_table(rep["tokenizers"], title="tokenizer report"))
    if html is not None:
        out_console.print(f"HTML report: {html}")


def register(app: typer.Typer) -> None:
    app.command("report")(cli_command(settings_options(stage="report")(report)))
