"""``tokenizer-kit embed``: aligned embeddings (M~) of a feature store, as Parquet."""

from __future__ import annotations

from pathlib import Path

import typer

from ..pipeline import EmbedConfig, stages
from ._common import OutputFormat, cli_command, emit_json, out_console, progress_bar
from ._options import settings_options

__all__ = ["register"]


def embed(
    features: Path = typer.Option(..., "--features", help="Feature store directory."),
    alignment: Path = typer.Option(..., "--alignment", help="Alignment directory (tokenizer-kit align)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output Parquet (item_id, embedding) for build-codebook."),
    cfg: EmbedConfig = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
):
    """Embed every item of a feature store with a trained QFormer."""
    with progress_bar() as progress:
        rec = stages.embed(features, alignment, out, cfg, overwrite=overwrite, progress=progress)
    if fmt == OutputFormat.json:
        emit_json(rec)
        return
    out_console.print(f"[bold]embeddings[/] -> {out}: {rec['n_items']:,} items x {rec['dim']} ({rec['pooling']})")


def register(app: typer.Typer) -> None:
    app.command("embed")(cli_command(settings_options(stage="embed")(embed)))
