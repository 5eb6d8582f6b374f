"""``tokenizer-kit embed-text``: one mean-pooled sentence vector per item (the raw baseline)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..pipeline import TextEmbedConfig, stages
from ._common import OutputFormat, cli_command, emit_json, out_console, progress_bar
from ._options import settings_options

__all__ = ["register"]


def embed_text(
    catalog: Path = typer.Argument(..., help="Catalogue: Parquet, JSONL, LC-Rec *.item.json or a saved HF dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="Output Parquet (item_id, embedding)."),
    cfg: TextEmbedConfig = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
):
    """Embed each item's text fields with a sentence encoder, mean-pooled (MiniLM recipe)."""
    with progress_bar() as progress:
        res = stages.embed_text(catalog, out, cfg, overwrite=overwrite, progress=progress)
    if fmt == OutputFormat.json:
        emit_json(res)
    else:
        out_console.print(f"embedded {res['n_items']} items ({res['dim']}-d) in {res['seconds']:.1f}s -> {out}")


def register(app: typer.Typer) -> None:
    app.command("embed-text")(cli_command(settings_options()(embed_text)))
