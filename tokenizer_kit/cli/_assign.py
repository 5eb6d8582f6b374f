"""``tokenizer-kit assign``: encode items with a frozen tokenizer; cold-start them into the index.

Without an index in the tokenizer directory it writes raw codes (``--out``). With one it
resolves the new items against the existing SIDs (never changing one) and reports the
cold-start lookup table; ``--update`` also appends them to the index (atomically).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import OutputFormat, cli_command, emit_json, err_console, holds_writer_lock, out_console, progress_bar, setup_logging

__all__ = ["register"]


def _write_lookup(path: Path, table: list[dict], levels: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..io import atomic_write

    ids = [r["item_id"] for r in table]
    id_arr = pa.array(ids, pa.int64()) if all(isinstance(i, int) for i in ids) and ids else pa.array([str(i) for i in ids], pa.string())
    cols = {"item_id": id_arr}
    for l in range(levels):
        cols[f"code_{l}"] = pa.array([r["codes"][l] for r in table], pa.int32())
    cols["sid"] = pa.array([r["sid"] for r in table], pa.string())
    for k in ("status",):
        cols[k] = pa.array([r[k] for r in table], pa.string())
    for k in ("collided", "moved"):
        cols[k] = pa.array([r[k] for r in table], pa.bool_())
    cols["nearest"] = pa.array([[str(v) for v in r["nearest"]] for r in table], pa.list_(pa.string()))
    with atomic_write(path) as tmp:
        pq.write_table(pa.table(cols), tmp)


def assign(
    embeddings: Path = typer.Argument(..., help="Embeddings of the items to assign (same model as the tokenizer)."),
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help="Tokenizer directory from build-codebook."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output Parquet: item_id, code_0.., sid (+ status, collided, moved, nearest with an index)."),
    update: bool = typer.Option(False, "--update", help="Append the new items to the index (sids.parquet, trie), bump its version; atomic."),
    replace: bool = typer.Option(False, "--replace", help="A known item with a different embedding gets a new SID; its old SID is retired."),
    ids: Optional[Path] = typer.Option(None, "--ids", help="Item ids for a .npy input."),
    id_column: str = typer.Option("item_id", "--id-column"),
    vector_column: Optional[str] = typer.Option(None, "--vector-column"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Items per encoding batch."),
    show: int = typer.Option(10, "--show", min=0, help="Lookup rows printed (table format; JSON lists every row)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
):
    """Assign SIDs to items with frozen codebooks; with an index, cold-start them (--update to write)."""
    setup_logging(verbose)
    from .. import SemanticTokenizer
    from ..errors import TokenizerKitError
    from ..indexer import SIDIndex
    from ..io import load_embeddings

    tok = SemanticTokenizer.from_pretrained(tokenizer)
    idx = SIDIndex.from_tokenizer(tok)
    if idx is None and (update or replace):
        raise TokenizerKitError(f"{tokenizer} has no SID index to update; run `tokenizer-kit index {tokenizer}` first")
    if idx is None and out is None:
        raise TokenizerKitError("pass --out FILE.parquet for the codes (this tokenizer has no SID index to report against)")
    if idx is None:
        # no index to cold-start into: stream the input, batch by batch, into --out
        from .._streaming import assign_streaming

        with progress_bar(enabled=True) as progress:
            res = assign_streaming(
                tok, embeddings, out, batch_size=batch_size or 65536, progress=progress,
                ids_path=ids, id_column=id_column, vector_column=vector_column,
            )
        res = {"tokenizer": str(tokenizer), **res}
        res.pop("seconds", None)
        if fmt == OutputFormat.json:
            emit_json(res)
        else:
            from rich.table import Table

            t = Table(title=f"assigned {res['n_items']} items -> {out}")
            t.add_column("field")
            t.add_column("value", justify="right")
            for k, v in res.items():
                t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
            out_console.print(t)
        return

    emb = load_embeddings(embeddings, ids_path=ids, id_column=id_column, vector_column=vector_column)
    with err_console.status(f"cold start: {len(emb)} items against {len(idx)} indexed"):
        new, table, summary = idx.assign(tok, emb.ids, emb.vectors, replace=replace, batch_size=batch_size)
        if update and new.version != idx.version:
            new.save(tok, tokenizer)
    summary = {"tokenizer": str(tokenizer), "updated": bool(update and new.version != idx.version), **summary}
    if out is not None:
        _write_lookup(out, table, new.sid_length)
        summary["out"] = str(out)
    if fmt == OutputFormat.json:
        emit_json({**summary, "lookup": table})
        return
    out_console.print(_summary_table(summary))
    if table and show:
        from rich.table import Table

        t = Table(title=f"cold-start lookup (first {min(show, len(table))} of {len(table)})")
        for c in ("item_id", "sid", "status", "collided", "moved", "nearest"):
            t.add_column(c)
        for r in table[:show]:
            t.add_row(str(r["item_id"]), r["sid"], r["status"], str(r["collided"]), str(r["moved"]), ", ".join(map(str, r["nearest"])))
        out_console.print(t)


def _summary_table(res: dict):
    from rich.table import Table

    t = Table(title="cold start" + (" (index updated)" if res.get("updated") else " (report only; --update to write)"))
    t.add_column("field")
    t.add_column("value", justify="right")
    for k, v in res.items():
        t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    return t


def register(app: typer.Typer) -> None:
    app.command("assign")(cli_command(holds_writer_lock("tokenizer", when="update")(assign)))
