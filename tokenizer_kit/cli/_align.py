"""``tokenizer-kit align``: train the QFormer on item pairs (InfoNCE + caption loss)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ..pipeline import AlignStageConfig, stages
from ._common import OutputFormat, cli_command, emit_json, out_console, progress_bar
from ._options import settings_options

__all__ = ["register"]


def align(
    features: Path = typer.Option(..., "--features", help="Feature store directory (tokenizer-kit extract)."),
    pairs: Path = typer.Option(..., "--pairs", help="Pairs Parquet (tokenizer-kit mine-pairs)."),
    out: Path = typer.Option(..., "--out", "-o", help="Alignment output directory."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="Catalogue for caption texts (needed unless --caption-weight 0)."),
    eval_pairs: Optional[Path] = typer.Option(None, "--eval-pairs", help="Held-out pairs Parquet (default: hold out --eval-fraction of --pairs)."),
    cfg: AlignStageConfig = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete OUT first."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
):
    """Train the alignment QFormer; writes manifest.json, model.safetensors, eval.json, metrics.jsonl."""
    is_rank0 = int(os.environ.get("RANK", "0")) == 0
    with progress_bar(enabled=is_rank0) as progress:
        res = stages.align(features, pairs, out, cfg, catalog=catalog, eval_pairs=eval_pairs, overwrite=overwrite,
                           progress=progress)
    if not is_rank0:
        return
    if fmt == OutputFormat.json:
        emit_json(res)
        return
    out_console.print(f"[bold]alignment[/] -> {out}: {res['steps_done']} steps, {res['train_pairs']:,} training pairs")
    ev = res.get("eval") or {}
    if "recall_aligned" in ev:
        out_console.print(
            f"held-out recall@{ev['k']}: aligned {ev['recall_aligned']:.4f}, raw pooled {ev['recall_raw_pooled']:.4f} ({ev['n_pairs']:,} pairs)"
        )
    if "caption_loss_with_prefix" in ev:
        other = ev.get("caption_loss_other_item_prefix")
        other_s = f", another item's prefix {other:.3f}" if other is not None else ""
        out_console.print(f"caption loss: with M~ prefix {ev['caption_loss_with_prefix']:.3f}, without {ev['caption_loss_without_prefix']:.3f}{other_s}")


def register(app: typer.Typer) -> None:
    app.command("align")(cli_command(settings_options(stage="align")(align)))
