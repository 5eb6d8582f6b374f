"""``tokenizer-kit embed``: aligned embeddings (M~) of a feature store, as Parquet."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import OutputFormat, cli_command, emit_json, out_console, progress_bar, setup_logging

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("embed")
    @cli_command
    def embed_cmd(
        features: Path = typer.Option(..., "--features", help="Feature store directory."),
        alignment: Path = typer.Option(..., "--alignment", help="Alignment directory (tokenizer-kit align)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output Parquet (item_id, embedding) for build-codebook."),
        pooling: str = typer.Option("flatten", "--pooling", help="flatten (N_q*d_t, per-query normalised), mean (d_t) or raw (N_q*d_t as is)."),
        batch_size: int = typer.Option(256, "--batch-size"),
        max_tokens: int = typer.Option(None, "--max-tokens", help="Default: the value the model was trained with."),
        device: str = typer.Option(None, "--device"),
        overwrite: bool = typer.Option(False, "--overwrite"),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ):
        """Embed every item of a feature store with a trained QFormer."""
        from ..alignment import embed_store
        from ..errors import InputError
        from ..features import FeatureStore

        setup_logging(verbose)
        if out.exists() and not overwrite:
            raise InputError(f"{out} already exists; pass --overwrite or choose another path")
        store = FeatureStore.open(features)
        with progress_bar() as progress:
            rec = embed_store(store, alignment, out, pooling=pooling, batch_size=batch_size, max_tokens=max_tokens, device=device, progress=progress)
        if fmt == OutputFormat.json:
            emit_json(rec)
            return
        out_console.print(f"[bold]embeddings[/] -> {out}: {rec['n_items']:,} items x {rec['dim']} ({rec['pooling']})")
