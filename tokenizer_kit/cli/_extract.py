"""``tokenizer-kit extract``: catalogue -> token feature store (open_clip or transformers)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ._common import OutputFormat, cli_command, emit_json, err_console, out_console, progress_bar, setup_logging

__all__ = ["register"]


class Backend(str, Enum):
    open_clip = "open_clip"
    hf = "hf"


def _split(s: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (s or "").split(",") if p.strip())


@cli_command
def extract(
    catalog: Path = typer.Argument(..., help="Catalogue: Parquet, JSONL, LC-Rec .item.json or a saved HF dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="Feature store directory (resumed if it holds an unfinished store)."),
    backend: Backend = typer.Option(Backend.hf, "--backend", help="open_clip or hf (transformers)."),
    model: Optional[str] = typer.Option(None, "--model", help="open_clip name / config JSON, or a transformers model dir (hf default: offline all-MiniLM-L6-v2)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="open_clip weights: a local checkpoint or a tag (downloads only where the machine can)."),
    random_init: bool = typer.Option(False, "--random-init", help="open_clip with random weights (tests, throughput): the features are random."),
    text_fields: str = typer.Option("title,caption,tags,ocr,asr", "--text-fields", help="Comma-separated text columns."),
    image_fields: str = typer.Option("", "--image-fields", help="Comma-separated image columns (paths or bytes, one or many per item)."),
    max_tokens_per_field: int = typer.Option(64, "--max-tokens-per-field", help="Cap on each text field's tokens."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Cap on an item's tokens after concatenation (truncate)."),
    image_pool: Optional[int] = typer.Option(None, "--image-pool", help="Average-pool each image's patch grid to N x N (CLS kept)."),
    layer: Optional[int] = typer.Option(None, "--layer", help="hf: hidden-state index to keep (default: last layer)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Items per forward batch."),
    shard_size: int = typer.Option(4096, "--shard-size", help="Items per store shard (the resume unit)."),
    num_workers: int = typer.Option(2, "--num-workers", help="DataLoader workers decoding images (0: in process)."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed (random-init weights)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on a missing or corrupt image instead of skipping it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store at --out instead of resuming it."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
):
    """Extract token-level features of every item into a sharded store (resumable)."""
    setup_logging(verbose)
    from ..features import ExtractConfig, extract_features
    from ..io import read_catalog

    cfg = ExtractConfig(
        backend=backend.value,
        model=model,
        pretrained=pretrained,
        random_init=random_init,
        text_fields=_split(text_fields),
        image_fields=_split(image_fields),
        max_tokens_per_field=max_tokens_per_field,
        max_tokens=max_tokens,
        image_pool=image_pool,
        layer=layer,
        batch_size=batch_size,
        shard_size=shard_size,
        num_workers=num_workers if _split(image_fields) else 0,
        strict=strict,
        device=device,
        seed=seed,
    ).validate()
    table = read_catalog(catalog)
    if random_init:
        err_console.print(
            "[bold yellow]warning:[/] --random-init: no CLIP weights ship offline, so these open_clip features are "
            "RANDOM (fine for tests and throughput, useless for semantic IDs); pass --pretrained CHECKPOINT for real ones",
            highlight=False,
        )
    with progress_bar(enabled=fmt == OutputFormat.table) as progress:
        res = extract_features(table, out, cfg, overwrite=overwrite, base_dir=catalog.parent, progress=progress)
    d = res.to_dict()
    if fmt == OutputFormat.json:
        emit_json(d)
        return
    if res.rows_resumed:
        err_console.print(f"resumed at row {res.rows_resumed} of {res.n_rows}", highlight=False)
    out_console.print(
        f"[bold]{res.n_items}[/] items, {res.n_tokens} tokens (d={res.dim}, fp16) -> {res.path}\n"
        f"{res.rows_this_run} items this run in {res.seconds:.1f} s: {res.items_per_s:.1f} items/s, {res.tokens_per_s:.0f} tokens/s\n"
        f"images skipped: {res.n_image_errors}; items without content: {res.n_skipped_items}"
        + ("\n[yellow]features are from RANDOM weights (--random-init)[/]" if res.random_init else ""),
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("extract")(extract)


if __name__ == "__main__":  # python -m tokenizer_kit.cli._extract (before the other verbs are merged)
    _app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(_app)

    @_app.callback()
    def _main():
        """tokenizer-kit (extract only)."""

    _app()
