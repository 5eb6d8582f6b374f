"""``tokenizer-kit plan``: predicted collisions per codebook shape before a build, and a pick."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..pipeline import EmbeddingsInput
from ..quantizers import PlanConfig
from ._common import OutputFormat, cli_command, emit_json, out_console, progress_bar
from ._options import settings_options

__all__ = ["register"]


def plan(
    embeddings: Path = typer.Argument(..., help="Embeddings (or a sample of them): .npy, Parquet, a directory of shards, a saved HF dataset."),
    cfg: PlanConfig = None,
    ids: Optional[Path] = typer.Option(None, "--ids", help="Item ids for a .npy input (not needed to plan; checked if given)."),
    columns: EmbeddingsInput = None,
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json (results on stdout)."),
):
    """Predict, for candidate codebook shapes, how many items will share a SID (before any
    collision policy), the largest bucket and the suffix length, and recommend a shape.

    Example: tokenizer-kit plan sample.npy --catalogue-size 54000000 --shapes 3x256,3x4096,4x4096
    """
    from ..io import open_embeddings
    from ..quantizers import plan as run_plan

    stream = open_embeddings(embeddings, ids_path=ids, **{**columns.open_kw(), "row_ids": True})  # planning needs no ids
    with progress_bar() as progress:
        res = run_plan(stream, cfg, progress=progress)
    if fmt == OutputFormat.json:
        emit_json(res)
        return
    from rich.table import Table

    t = Table(title=f"plan for {res['catalogue_size']:,} items (codes measured on {res['sample']:,})")
    for c in ("shape", "SIDs", "items/SID", "colliding items", "largest bucket", "suffix codes", "seconds"):
        t.add_column(c, justify="right")
    for s in res["shapes"]:
        p = s["prediction"]
        if s["skipped"]:
            t.add_row(s["shape"], f"{s['sid_space']:.3g}", "", s["skipped"], "", "", "")
            continue
        mark = "" if p["measured"] else "~"
        t.add_row(
            s["shape"] + (" *" if s["shape"] == res["recommended"] else ""),
            f"{s['sid_space']:.3g}", f"{s['load_factor']:.3g}", f"{mark}{p['collision_rate']:.1%}",
            f"{mark}{p['largest_bucket']:,}", f"{mark}{p['suffix_codes']:,}", f"{s['seconds']:.1f}",
        )
    out_console.print(t)
    for s in res["shapes"]:
        if s["prediction"].get("caveat"):
            out_console.print(f"[yellow]{s['shape']}:[/] {s['prediction']['caveat']}")
    if res["recommended"]:
        out_console.print(f"recommended: [bold]{res['recommended']}[/] ({res['reason']}); ~ marks predictions, the rest is measured")


def register(app: typer.Typer) -> None:
    app.command("plan")(cli_command(settings_options()(plan)))
