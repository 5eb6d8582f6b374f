"""``tokenizer-kit compact``: fold the index's cold-start segments into a new base."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import OutputFormat, cli_command, emit_json, holds_writer_lock, out_console, status

__all__ = ["register"]


def compact(
    tokenizer: Path = typer.Argument(..., help="Tokenizer directory whose index has cold-start segments (from `assign --update`)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
):
    """Merge the index's segments into one base (rewrites the directory atomically; no SID changes)."""
    from .. import SemanticTokenizer
    from ..errors import TokenizerKitError
    from ..indexer import SIDIndex

    tok = SemanticTokenizer.from_pretrained(tokenizer)
    idx = SIDIndex.stored(tok)
    if idx is None:
        raise TokenizerKitError(f"{tokenizer} has no SID index; run `tokenizer-kit index {tokenizer}` first")
    merged = len(idx.segments)
    if merged:
        with status(f"compacting {merged} segments ({len(idx)} items)"):
            idx.compact(tok, tokenizer)
    res = {"tokenizer": str(tokenizer), "segments_merged": merged, "items": len(idx), "version": idx.version}
    if fmt == OutputFormat.json:
        emit_json(res)
    else:
        out_console.print(f"{tokenizer}: merged {merged} segments; {len(idx)} items, index version {idx.version}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("compact")(cli_command(holds_writer_lock("tokenizer")(compact)))
