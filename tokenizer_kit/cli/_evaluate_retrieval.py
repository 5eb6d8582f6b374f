"""``tokenizer-kit evaluate-retrieval``: the downstream check of SIDs (train a small generative retriever, score it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..pipeline import stages
from ..pipeline._stage_configs import RetrievalStageConfig
from ._common import OutputFormat, cli_command, emit_json, out_console, progress_bar, setup_logging
from ._options import settings_options

__all__ = ["register"]


def evaluate_retrieval(
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help="Tokenizer directory (indexed) or an LC-Rec *.index.json of any tool."),
    interactions: Path = typer.Option(..., "--interactions", "-i", help="Interactions: Parquet (user_id, item_id, timestamp) or an LC-Rec *.inter.json."),
    cfg: RetrievalStageConfig = None,
    model_out: Optional[Path] = typer.Option(None, "--model-out", help="Also save the trained model (config.json + model.safetensors)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the full result JSON here."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
):
    """Train a small generative retriever on the SIDs and report leave-one-out Recall@5/10 and NDCG@5/10 (full ranking)."""
    setup_logging(verbose)
    with progress_bar() as progress:
        res = stages.evaluate_retrieval(tokenizer, interactions, cfg, out=out, model_out=model_out, progress=progress)
    if fmt == OutputFormat.json:
        emit_json(res)
        return
    _render(res, tokenizer, cfg.epochs, out)


def _render(res: dict, tokenizer: Path, epochs: int, out: Optional[Path]) -> None:
    from rich.table import Table

    t = Table(title=f"leave-one-out retrieval on {tokenizer} ({res['test']['users']} test users, {res['n_items']} items)")
    for c in ("split", "recall@5", "ndcg@5", "recall@10", "ndcg@10"):
        t.add_column(c, justify="right")
    for part in ("test", "valid"):
        m = res[part]
        if "recall@5" in m:
            t.add_row(part, *(f"{m[k]:.4f}" for k in ("recall@5", "ndcg@5", "recall@10", "ndcg@10")))
    out_console.print(t)
    losses = res["train"]["losses"]
    out_console.print(
        f"train {res['seconds']['train']:.0f}s ({epochs} epochs, final loss {losses[-1] if losses else float('nan'):.4f}), "
        f"test {res['seconds']['test']:.0f}s, invalid SIDs {res['test']['invalid_sid_rate']:.2%}" + (f"; wrote {out}" if out else ""),
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("evaluate-retrieval")(cli_command(settings_options(stage="retrieval")(evaluate_retrieval)))
