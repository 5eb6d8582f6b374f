"""``tokenizer-kit extract``: catalogue -> token feature store (open_clip or transformers)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..pipeline import ExtractStageConfig, stages
from ._common import OutputFormat, cli_command, emit_json, note, out_console, progress_bar
from ._options import settings_options

__all__ = ["register"]


def extract(
    catalog: Path = typer.Argument(..., help="Catalogue: Parquet, JSONL, LC-Rec .item.json or a saved HF dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="Feature store directory (resumed if it holds an unfinished store)."),
    cfg: ExtractStageConfig = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store at --out instead of resuming it."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
):
    """Extract token-level features of every item into a sharded store (resumable)."""
    if cfg.random_init:
        note("[bold yellow]warning:[/] --random-init: no CLIP weights ship offline, so these open_clip features are "
             "RANDOM (fine for tests and throughput, useless for semantic IDs); pass --pretrained CHECKPOINT for real ones")
    with progress_bar(enabled=fmt == OutputFormat.table) as progress:
        res = stages.extract(catalog, out, cfg, overwrite=overwrite, progress=progress)
    if fmt == OutputFormat.json:
        emit_json(res.to_dict())
        return
    if res.rows_resumed:
        note(f"resumed at row {res.rows_resumed} of {res.n_rows}")
    out_console.print(
        f"[bold]{res.n_items}[/] items, {res.n_tokens} tokens (d={res.dim}, fp16) -> {res.path}\n"
        f"{res.rows_this_run} items this run in {res.seconds:.1f} s: {res.items_per_s:.1f} items/s, {res.tokens_per_s:.0f} tokens/s\n"
        f"images skipped: {res.n_image_errors}; items without content: {_empty_line(res)}"
        + ("\n[yellow]features are from RANDOM weights (--random-init)[/]" if res.random_init else ""),
        highlight=False,
    )


def _empty_line(res) -> str:
    if not res.n_empty_items:
        return "0"
    how = "embedded as the empty text, each keeps its row" if res.empty_items == "embed" else "left out of the store (no SID)"
    from rich.markup import escape

    first = escape(", ".join(map(str, res.empty_item_ids[:5])))
    return f"[yellow]{res.n_empty_items}[/] ({how}; first: {first})"


def register(app: typer.Typer) -> None:
    app.command("extract")(cli_command(settings_options(stage="extract")(extract)))
