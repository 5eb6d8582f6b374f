"""``tokenizer-kit mine-pairs``: Swing + user-to-item pairs from an interaction log."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._common import OutputFormat, cli_command, emit_json, out_console, setup_logging

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("mine-pairs")
    @cli_command
    def mine_pairs_cmd(
        interactions: Path = typer.Argument(..., help="Interactions: Parquet (user_id, item_id, timestamp[, label]) or LC-Rec .inter.json."),
        out: Path = typer.Option(..., "--out", "-o", help="Output pairs Parquet (item_a, item_b, score, source)."),
        heldout_out: Path = typer.Option(None, "--heldout-out", help="Also write held-out co-click pairs (validation item, test item per user)."),
        split: bool = typer.Option(True, "--split/--no-split", help="Mine only the training part of a leave-one-out split (default) or the whole log."),
        topk: int = typer.Option(10, "--topk", help="Swing neighbours per item."),
        alpha: float = typer.Option(1.0, "--alpha", help="Swing smoothing alpha."),
        user_weight_power: float = typer.Option(0.5, "--user-weight-power", help="User weight |I_u|^-p (0 disables)."),
        max_items_per_user: int = typer.Option(200, "--max-items-per-user", help="Cap: latest items kept per user."),
        max_users_per_item: int = typer.Option(1000, "--max-users-per-item", help="Cap: latest users kept per item."),
        u2i_history: int = typer.Option(10, "--u2i-history", help="User-to-item: latest positive clicks searched for the partner."),
        u2i_targets: int = typer.Option(1, "--u2i-targets", help="User-to-item: targets per user (latest clicks; 0 disables). The paper pairs one; 40 gave the best held-out recall on Office (README)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ):
        """Mine item pairs (Swing top-k + user-to-item) for alignment training."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ..alignment import PairMiningConfig, interaction_log, leave_one_out_split, mine_pairs
        from ..errors import InputError
        from ..io import atomic_write, read_interactions

        setup_logging(verbose)
        for p in (out, heldout_out):
            if p is not None and p.exists() and not overwrite:
                raise InputError(f"{p} already exists; pass --overwrite or choose another path")
        cfg = PairMiningConfig(
            alpha=alpha,
            user_weight_power=user_weight_power,
            max_items_per_user=max_items_per_user,
            max_users_per_item=max_users_per_item,
            swing_topk=topk,
            u2i_history=u2i_history,
            u2i_targets_per_user=u2i_targets,
        ).validate()
        log = interaction_log(read_interactions(interactions))
        sp = leave_one_out_split(log) if split else None
        train = sp.train if sp is not None else log
        table, stats = mine_pairs(train, cfg)
        stats["split"] = "leave-one-out train part" if split else "whole log"
        table = table.replace_schema_metadata({"tokenizer_kit": json.dumps({"stats": stats, "interactions": str(interactions)})})
        with atomic_write(out) as tmp:
            pq.write_table(table, str(tmp))
        result = {"out": str(out), **stats}
        if heldout_out is not None:
            if sp is None:
                raise InputError("--heldout-out needs the leave-one-out split; drop --no-split")
            ids = log.item_ids
            # valid and test rows are one per user, both sorted by user
            held = pa.table(
                {
                    "item_a": ids[sp.valid.items].astype(str).tolist(),
                    "item_b": ids[sp.test.items].astype(str).tolist(),
                    "score": pa.array([1.0] * len(sp.valid), pa.float64()),
                    "source": ["heldout"] * len(sp.valid),
                }
            )
            with atomic_write(heldout_out) as tmp:
                pq.write_table(held, str(tmp))
            result["heldout"] = {"out": str(heldout_out), "pairs": int(held.num_rows)}
        if fmt == OutputFormat.json:
            emit_json(result)
            return
        p = stats["pairs"]
        out_console.print(f"[bold]pairs[/] -> {out}: swing {p['swing']:,}  u2i {p['u2i']:,}  total {p['total']:,}")
        out_console.print(
            f"items {stats['n_items']:,} (users {stats['n_users']:,}, interactions {stats['n_interactions']:,}); "
            f"coverage swing {stats['coverage']['swing']:.1%}, all {stats['coverage']['all']:.1%}"
        )
        if "heldout" in result:
            out_console.print(f"held-out pairs -> {heldout_out}: {result['heldout']['pairs']:,}")
