"""``tokenizer-kit report``: metrics of tokenizers (or other tools' *.index.json) side by side."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from ..pipeline import ReportConfig, stages
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
    if len(rep["tokenizers"]) > 1:
        out_console.print("[green]*[/] best value of the row; `--format json` has what each metric means (comparison[].help)")
    for c in rep.get("caveats") or []:
        out_console.print(f"[bold yellow]caveat:[/] {escape(c)}", highlight=False)
    for r in rep["tokenizers"]:
        for e in (r.get("collision_examples") or [])[:1]:
            items = "; ".join(f"{it['item_id']}" + (f" ({it['title']})" if it.get("title") else "") for it in e["items"][:3])
            out_console.print(escape(f"{r['name']}: largest bucket {e['sid']} holds {e['size']} items, e.g. {items}"), highlight=False)
    if html is not None:
        out_console.print(f"HTML report: {html}")


def register(app: typer.Typer) -> None:
    app.command("report")(cli_command(settings_options(stage="report")(report)))
