"""``tokenizer-kit mine-pairs``: Swing + user-to-item pairs from an interaction log."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..pipeline import MinePairsConfig, stages
from ._common import OutputFormat, cli_command, emit_json, out_console
from ._options import settings_options

__all__ = ["register"]


def mine_pairs(
    interactions: Path = typer.Argument(..., help="Interactions: Parquet (user_id, item_id, timestamp[, label]) or LC-Rec .inter.json."),
    out: Path = typer.Option(..., "--out", "-o", help="Output pairs Parquet (item_a, item_b, score, source)."),
    heldout_out: Optional[Path] = typer.Option(None, "--heldout-out", help="Also write held-out co-click pairs (validation item, test item per user)."),
    cfg: MinePairsConfig = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
):
    """Mine item pairs (Swing top-k + user-to-item) for alignment training."""
    result = stages.mine_pairs(interactions, out, cfg, heldout_out=heldout_out, overwrite=overwrite)
    if fmt == OutputFormat.json:
        emit_json(result)
        return
    p = result["pairs"]
    out_console.print(f"[bold]pairs[/] -> {out}: swing {p['swing']:,}  u2i {p['u2i']:,}  total {p['total']:,}")
    out_console.print(
        f"items {result['n_items']:,} (users {result['n_users']:,}, interactions {result['n_interactions']:,}); "
        f"coverage swing {result['coverage']['swing']:.1%}, all {result['coverage']['all']:.1%}"
    )
    if "heldout" in result:
        out_console.print(f"held-out pairs -> {heldout_out}: {result['heldout']['pairs']:,}")


def register(app: typer.Typer) -> None:
    app.command("mine-pairs")(cli_command(settings_options(stage="mine_pairs")(mine_pairs)))
