"""``tokenizer-kit evaluate-retrieval``: the downstream check of SIDs (train a small generative retriever, score it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import OutputFormat, cli_command, emit_json, err_console, out_console, setup_logging

__all__ = ["register"]


def evaluate_retrieval(
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help="Tokenizer directory (indexed) or an LC-Rec *.index.json of any tool."),
    interactions: Path = typer.Option(..., "--interactions", "-i", help="Interactions: Parquet (user_id, item_id, timestamp) or an LC-Rec *.inter.json."),
    epochs: int = typer.Option(3, "--epochs", min=0, help="Passes over the training windows (Office: 80-260 s each on 2 CPU cores, by load; 1 epoch barely beats random SIDs)."),
    seed: int = typer.Option(0, "--seed", help="Seed of init, shuffling and dropout (same input + seed -> same result)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    arch: str = typer.Option("t5", "--arch", help="t5 (encoder-decoder, as TIGER) or decoder (decoder-only)."),
    d_model: int = typer.Option(64, "--d-model", min=1),
    layers: int = typer.Option(2, "--layers", min=1, help="Layers (t5: each of encoder and decoder; decoder: twice this)."),
    heads: int = typer.Option(4, "--heads", min=1),
    d_ff: int = typer.Option(256, "--d-ff", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(3e-3, "--lr"),
    beam: int = typer.Option(10, "--beam", min=1, help="Beam width of the trie-constrained search (>= 10 for @10)."),
    max_history: int = typer.Option(20, "--max-history", min=1, help="Items of history per example."),
    eval_every: int = typer.Option(0, "--eval-every", min=0, help="Score validation users every N epochs and keep the best epoch (0: only the validation loss)."),
    max_users: Optional[int] = typer.Option(None, "--max-users", min=1, help="Use only the first N users (quick runs)."),
    max_eval_users: Optional[int] = typer.Option(None, "--max-eval-users", min=1, help="Score only the first N validation / test users."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads (1 is often faster on a busy machine)."),
    model_out: Optional[Path] = typer.Option(None, "--model-out", help="Also save the trained model (config.json + model.safetensors)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the full result JSON here."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
):
    """Train a small generative retriever on the SIDs and report leave-one-out Recall@5/10 and NDCG@5/10 (full ranking)."""
    setup_logging(verbose)
    from ..companion import RetrievalConfig
    from ..companion import evaluate_retrieval as run
    from ..io import atomic_write_json

    cfg = RetrievalConfig(
        arch=arch, epochs=epochs, seed=seed, device=device, d_model=d_model, num_layers=layers, num_heads=heads,
        d_ff=d_ff, batch_size=batch_size, lr=lr, beam_size=beam, max_history=max_history, eval_every=eval_every,
        max_eval_users=max_eval_users,
    ).validate()
    if threads:
        import torch

        torch.set_num_threads(threads)
    with err_console.status("training the retriever") as status:
        def on_epoch(rec):
            status.update(f"epoch {rec['epoch']}/{epochs}: loss {rec['loss']:.4f} ({rec['seconds']:.0f}s)")

        res = run(tokenizer, interactions, cfg, max_users=max_users, model_out=model_out, on_epoch=on_epoch)
    if out is not None:
        atomic_write_json(out, res)
        res["out"] = str(out)
    if fmt == OutputFormat.json:
        emit_json(res)
        return
    from rich.table import Table

    t = Table(title=f"leave-one-out retrieval on {tokenizer} ({res['test']['users']} test users, {res['n_items']} items)")
    for c in ("split", "recall@5", "ndcg@5", "recall@10", "ndcg@10"):
        t.add_column(c, justify="right")
    for part in ("test", "valid"):
        m = res[part]
        if "recall@5" in m:
            t.add_row(part, *(f"{m[k]:.4f}" for k in ("recall@5", "ndcg@5", "recall@10", "ndcg@10")))
    out_console.print(t)
    out_console.print(
        f"train {res['seconds']['train']:.0f}s ({epochs} epochs, final loss {res['train']['losses'][-1] if res['train']['losses'] else float('nan'):.4f}), "
        f"test {res['seconds']['test']:.0f}s, invalid SIDs {res['test']['invalid_sid_rate']:.2%}" + (f"; wrote {out}" if out else ""),
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("evaluate-retrieval")(cli_command(evaluate_retrieval))
