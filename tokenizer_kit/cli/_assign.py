"""``tokenizer-kit assign``: encode items with a frozen tokenizer and write their SIDs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import OutputFormat, cli_command, emit_json, err_console, out_console, setup_logging

__all__ = ["register"]


def assign(
    embeddings: Path = typer.Argument(..., help="Embeddings of the items to assign (same model as the tokenizer)."),
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help="Tokenizer directory from build-codebook."),
    out: Path = typer.Option(..., "--out", "-o", help="Output Parquet: item_id, code_0.., sid."),
    ids: Optional[Path] = typer.Option(None, "--ids", help="Item ids for a .npy input."),
    id_column: str = typer.Option("item_id", "--id-column"),
    vector_column: Optional[str] = typer.Option(None, "--vector-column"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Items per encoding batch."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
):
    """Assign SIDs to items with frozen codebooks (no index update; see `index`/`assign --update`)."""
    setup_logging(verbose)
    from .. import SemanticTokenizer
    from ..evaluation import collision_stats
    from ..io import load_embeddings
    from ..io import write_sids_parquet

    tok = SemanticTokenizer.from_pretrained(tokenizer)
    emb = load_embeddings(embeddings, ids_path=ids, id_column=id_column, vector_column=vector_column)
    with err_console.status(f"encoding {len(emb)} items"):
        codes = tok.encode(emb.vectors, batch_size=batch_size)
    write_sids_parquet(out, emb.ids, codes, tok.sid_strings(codes))
    known = 0
    clash = 0
    if tok.codes is not None:
        idx = {str(i) for i in tok.item_ids.tolist()}
        known = sum(str(i) in idx for i in emb.ids.tolist())
        existing = {tuple(r) for r in tok.codes.tolist()}
        clash = sum(tuple(r) in existing for r in codes.tolist())
    res = {
        "n_items": int(len(emb)),
        "out": str(out),
        "tokenizer": str(tokenizer),
        "already_indexed_items": int(known),
        "sids_shared_with_index": int(clash),
        **{k: v for k, v in collision_stats(codes).items() if k in ("collision_rate", "unique_sids", "largest_bucket")},
    }
    if fmt == OutputFormat.json:
        emit_json(res)
    else:
        from rich.table import Table

        t = Table(title=f"assigned {len(emb)} items -> {out}")
        t.add_column("field")
        t.add_column("value", justify="right")
        for k, v in res.items():
            t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
        out_console.print(t)
        if len(emb):
            out_console.print(f"first SID: {emb.ids[0]} -> {tok.sid_strings(codes[:1])[0]}")


def register(app: typer.Typer) -> None:
    app.command("assign")(cli_command(assign))
