"""``tokenizer-kit plan``: predicted collisions per codebook shape before a build, and a pick."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer

from ..quantizers._plan import PlanConfig
from ._common import OutputFormat, cli_command, emit_json, out_console, progress_bar, setup_logging

__all__ = ["register"]

_D = PlanConfig()
_HELP = {f.name: f.metadata.get("help", "") for f in fields(PlanConfig)}


def plan(
    embeddings: Path = typer.Argument(..., help="Embeddings (or a sample of them): .npy, Parquet, a directory of shards, a saved HF dataset."),
    shapes: str = typer.Option(_D.shapes, "--shapes", help=_HELP["shapes"]),
    catalogue_size: int = typer.Option(_D.catalogue_size, "--catalogue-size", help=_HELP["catalogue_size"]),
    sample: int = typer.Option(_D.sample, "--sample", help=_HELP["sample"]),
    points_per_centroid: int = typer.Option(_D.points_per_centroid, "--points-per-centroid", help=_HELP["points_per_centroid"]),
    max_train_points: int = typer.Option(_D.max_train_points, "--max-train-points", help=_HELP["max_train_points"]),
    niter: int = typer.Option(_D.niter, "--niter", help=_HELP["niter"]),
    max_collision_rate: float = typer.Option(_D.max_collision_rate, "--max-collision-rate", help=_HELP["max_collision_rate"]),
    balanced: bool = typer.Option(_D.balanced, "--balanced", help=_HELP["balanced"]),
    normalize: bool = typer.Option(_D.normalize, "--normalize", help=_HELP["normalize"]),
    seed: int = typer.Option(_D.seed, "--seed", help=_HELP["seed"]),
    ids: Optional[Path] = typer.Option(None, "--ids", help="Item ids for a .npy input (not needed to plan; checked if given)."),
    vector_column: Optional[str] = typer.Option(None, "--vector-column", help="Vector column (Parquet / datasets); guessed if omitted."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json (results on stdout)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr."),
):
    """Predict, for candidate codebook shapes, how many items will share a SID (before any
    collision policy), the largest bucket and the suffix length, and recommend a shape.

    Example: tokenizer-kit plan sample.npy --catalogue-size 54000000 --shapes 3x256,3x4096,4x4096
    """
    setup_logging(verbose)
    from ..io import open_embeddings
    from ..quantizers._plan import plan as run_plan

    cfg = PlanConfig(
        shapes=shapes, catalogue_size=catalogue_size, sample=sample, points_per_centroid=points_per_centroid,
        max_train_points=max_train_points, niter=niter, max_collision_rate=max_collision_rate, balanced=balanced,
        normalize=normalize, seed=seed,
    ).validate()
    stream = open_embeddings(embeddings, ids_path=ids, vector_column=vector_column)
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
    app.command("plan")(cli_command(plan))
