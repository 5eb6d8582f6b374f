"""``tokenizer-kit build-codebook``: fit a quantizer on embeddings and save a tokenizer directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..pipeline import CategoriesInput, CodebookConfig, EmbeddingsInput, stages
from ._common import OutputFormat, cli_command, emit_json, out_console, progress_bar
from ._options import settings_options

__all__ = ["register"]


def build_codebook(
    embeddings: Path = typer.Argument(..., help="Embeddings: .npy (+ ids), Parquet, a directory of shards, or a saved HF dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="Output tokenizer directory."),
    cfg: CodebookConfig = None,
    ids: Optional[Path] = typer.Option(None, "--ids", help="Item ids for a .npy input (.npy/.json/.txt)."),
    columns: EmbeddingsInput = None,
    categories: Optional[Path] = typer.Option(None, "--categories", help="Catalogue with a categories column, for the level-1 NMI metric."),
    category_input: CategoriesInput = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output directory."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json (results on stdout)."),
):
    """Build a tokenizer (codebooks + SIDs of every item) from item embeddings.

    Settings of the method not listed here (RQKMeansConfig / RQVAEConfig fields, e.g. latent_dim)
    go in a --config file, as in the \\[codebook] table of a pipeline config.
    """
    with progress_bar() as progress:
        report = stages.build_codebook(embeddings, out, cfg, ids=ids, columns=columns, categories=categories,
                                       category_input=category_input, overwrite=overwrite, progress=progress)
    if fmt == OutputFormat.json:
        emit_json({"tokenizers": [report]})
    else:
        from ._render import build_summary, metrics_table

        out_console.print(metrics_table([report], title=f"built {out}"))
        files = sorted(p.name for p in Path(out).iterdir() if not p.name.startswith("."))
        out_console.print(build_summary(report, files), markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("build-codebook")(cli_command(settings_options(stage="codebook")(build_codebook)))
