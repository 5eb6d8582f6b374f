"""``tokenizer-kit build-codebook``: fit a quantizer on embeddings and save a tokenizer directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._common import OutputFormat, cli_command, emit_json, err_console, out_console, progress_bar, setup_logging

__all__ = ["register"]


def _categories(path: Optional[Path], column: str):
    if path is None:
        return None
    from ..io import item_categories, read_catalog

    return item_categories(read_catalog(path), column)


def build_codebook(
    embeddings: Path = typer.Argument(..., help="Embeddings: .npy (+ ids), Parquet, a directory of shards, or a saved HF dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="Output tokenizer directory."),
    method: str = typer.Option("rq-kmeans", "--method", help="Quantizer: rq-kmeans or rq-vae."),
    levels: int = typer.Option(3, "--levels", min=1, help="Number of code levels."),
    codebook_size: str = typer.Option("256", "--codebook-size", help="Codes per level: one size (256) or one per level (8192,8192,8192)."),
    balanced: bool = typer.Option(False, "--balanced", help="Size-balanced k-means per level + distinct last-level codes per prefix (rq-kmeans)."),
    beam_size: int = typer.Option(1, "--beam-size", min=1, help="Beam width for encoding (1 = greedy)."),
    normalize: bool = typer.Option(False, "--normalize", help="L2-normalise embeddings before quantizing."),
    seed: int = typer.Option(1234, "--seed", help="Random seed (same input + seed -> same SIDs)."),
    niter: Optional[int] = typer.Option(None, "--niter", help="k-means iterations per level (rq-kmeans; default 20)."),
    max_points_per_centroid: Optional[int] = typer.Option(None, "--max-points-per-centroid", help="k-means sample cap per centroid (rq-kmeans; default 256)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (FAISS GPU k-means when available)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Max training epochs (rq-vae; default 200, early stop on validation)."),
    checkpoint_dir: Optional[Path] = typer.Option(None, "--checkpoint-dir", help="Write a resumable training checkpoint here every epoch (rq-vae)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Resume training from a --checkpoint-dir (rq-vae)."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file of extra quantizer config keys (flags given here win)."),
    ids: Optional[Path] = typer.Option(None, "--ids", help="Item ids for a .npy input (.npy/.json/.txt)."),
    id_column: str = typer.Option("item_id", "--id-column", help="Item id column (Parquet / datasets)."),
    vector_column: Optional[str] = typer.Option(None, "--vector-column", help="Vector column (Parquet / datasets); guessed if omitted."),
    categories: Optional[Path] = typer.Option(None, "--categories", help="Catalogue with a categories column, for the level-1 NMI metric."),
    category_column: str = typer.Option("categories", "--category-column"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output directory."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json (results on stdout)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr."),
):
    """Build a tokenizer (codebooks + SIDs of every item) from item embeddings."""
    setup_logging(verbose)
    from .. import SemanticTokenizer
    from ..errors import TokenizerKitError
    from ..io import load_embeddings
    from ..quantizers import get_quantizer_class, parse_codebook_sizes

    if out.exists() and not overwrite:
        raise TokenizerKitError(f"output directory {out} already exists; pass --overwrite to replace it or choose another --out")
    get_quantizer_class(method)
    qcfg: dict = {}
    if config is not None:
        try:
            qcfg.update(json.loads(Path(config).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise TokenizerKitError(f"--config {config}: cannot read a JSON object ({e})") from None
    qcfg["codebook_sizes"] = parse_codebook_sizes(codebook_size, levels)
    qcfg["seed"] = seed
    qcfg["device"] = device
    if method == "rq-kmeans":
        qcfg.update(balanced=balanced, beam_size=beam_size)
        if niter is not None:
            qcfg["niter"] = niter
        if max_points_per_centroid is not None:
            qcfg["max_points_per_centroid"] = max_points_per_centroid
    elif balanced or beam_size != 1:
        raise TokenizerKitError(f"--balanced and --beam-size apply to rq-kmeans, not {method}")
    if method == "rq-vae":
        if epochs is not None:
            qcfg["max_epochs"] = epochs
        if checkpoint_dir is not None:
            qcfg["checkpoint_dir"] = str(checkpoint_dir)
        if resume is not None:
            qcfg["resume_from"] = str(resume)
    elif epochs is not None or checkpoint_dir is not None or resume is not None:
        raise TokenizerKitError(f"--epochs, --checkpoint-dir and --resume apply to rq-vae, not {method}")
    cats_map = _categories(categories, category_column)
    if method == "rq-kmeans":
        # streams the input in batches: any catalogue size, same SIDs as the in-memory build
        from .._streaming import build_streaming

        with progress_bar(enabled=True) as progress:
            tok = build_streaming(
                embeddings, out, normalize=normalize, categories=cats_map, overwrite=overwrite, progress=progress,
                ids_path=ids, id_column=id_column, vector_column=vector_column, **qcfg,
            )
    else:
        emb = load_embeddings(embeddings, ids_path=ids, id_column=id_column, vector_column=vector_column)
        cats = None if cats_map is None else [cats_map.get(str(i)) for i in emb.ids.tolist()]
        with err_console.status(f"building {method} tokenizer on {len(emb)} x {emb.dim}"):
            tok = SemanticTokenizer.build(emb, method=method, normalize=normalize, categories=cats, **qcfg)
            tok.save_pretrained(out, overwrite=overwrite)
    report = {"name": out.name, "path": str(out), "method": method, "build_seconds": tok.info["fit_seconds"], **tok.metrics}
    if fmt == OutputFormat.json:
        emit_json({"tokenizers": [report]})
    else:
        from ._render import metrics_table

        out_console.print(metrics_table([report], title=f"built {out}"))


def register(app: typer.Typer) -> None:
    app.command("build-codebook")(cli_command(build_codebook))
