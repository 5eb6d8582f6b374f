"""``tokenizer-kit align``: train the QFormer on item pairs (InfoNCE + caption loss)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer

from ._common import OutputFormat, cli_command, emit_json, out_console, progress_bar, setup_logging

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("align")
    @cli_command
    def align_cmd(
        features: Path = typer.Option(..., "--features", help="Feature store directory (tokenizer-kit extract)."),
        pairs: Path = typer.Option(..., "--pairs", help="Pairs Parquet (tokenizer-kit mine-pairs)."),
        out: Path = typer.Option(..., "--out", "-o", help="Alignment output directory."),
        catalog: Path = typer.Option(None, "--catalog", help="Catalogue for caption texts (needed unless --no-caption)."),
        eval_pairs: Path = typer.Option(None, "--eval-pairs", help="Held-out pairs Parquet (default: hold out --eval-fraction of --pairs)."),
        config: Path = typer.Option(None, "--config", help="JSON AlignConfig; options given on the command line override it."),
        steps: int = typer.Option(None, "--steps"),
        batch_size: int = typer.Option(None, "--batch-size"),
        lr: float = typer.Option(None, "--lr"),
        warmup_steps: int = typer.Option(None, "--warmup-steps"),
        d_model: int = typer.Option(None, "--d-model", help="QFormer width d_t (default 512)."),
        n_queries: int = typer.Option(None, "--queries", help="N_q learnable queries (default 4)."),
        n_layers: int = typer.Option(None, "--layers", help="N_c layers (default 4)."),
        n_heads: int = typer.Option(None, "--heads"),
        pooled_query_init: bool = typer.Option(None, "--pooled-query-init/--learned-query-init", help="Start the queries from the mean of the item's tokens (not in the paper; helped on Office)."),
        max_tokens: int = typer.Option(None, "--max-tokens", help="Tokens read per item (longer items are truncated)."),
        temperature: float = typer.Option(None, "--temperature"),
        learn_temperature: bool = typer.Option(None, "--learn-temperature/--fixed-temperature"),
        caption_weight: float = typer.Option(None, "--caption-weight", help="lambda of the caption loss (0 disables)."),
        no_caption: bool = typer.Option(False, "--no-caption", help="Same as --caption-weight 0."),
        caption_lm: str = typer.Option(None, "--caption-lm", help="HF causal LM dir, DIR::FILE.gguf or hub id (default: offline SmolLM2-135M)."),
        caption_batch: int = typer.Option(None, "--caption-batch", help="Items per step that get the caption loss."),
        caption_every: int = typer.Option(None, "--caption-every", help="Caption loss every N steps."),
        caption_fields: str = typer.Option(None, "--caption-fields", help="Comma-separated catalogue columns forming the caption."),
        eval_fraction: float = typer.Option(None, "--eval-fraction"),
        checkpoint_every: int = typer.Option(None, "--checkpoint-every"),
        cache_tokens_gib: float = typer.Option(None, "--cache-tokens-gib", help="Hold all items' tokens on the training device when they fit in this many GiB (default 2; 0 reads the store every step)."),
        seed: int = typer.Option(None, "--seed"),
        device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda when available)."),
        resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume from OUT/checkpoint when present."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Delete OUT first."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ):
        """Train the alignment QFormer; writes config.json, model.safetensors, metrics.jsonl."""
        import os

        import pyarrow.parquet as pq

        from ..alignment import AlignConfig, caption_texts, train_alignment
        from ..errors import InputError
        from ..features import FeatureStore
        from ..io import read_catalog, sha256_file

        setup_logging(verbose)
        base = {}
        if config is not None:
            try:
                base = json.loads(Path(config).read_text())
            except json.JSONDecodeError as e:
                raise InputError(f"{config}: not valid JSON ({e.msg}); give an AlignConfig JSON object") from None
        cfg = AlignConfig.from_dict(base)
        q = cfg.qformer
        for name, val in (("d_model", d_model), ("n_queries", n_queries), ("n_layers", n_layers), ("n_heads", n_heads), ("pooled_query_init", pooled_query_init)):
            if val is not None:
                setattr(q, name, val)
        over = {
            "steps": steps, "batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps, "max_tokens": max_tokens,
            "temperature": temperature, "learn_temperature": learn_temperature, "caption_weight": caption_weight,
            "caption_lm": caption_lm, "caption_batch": caption_batch, "caption_every": caption_every,
            "eval_fraction": eval_fraction, "checkpoint_every": checkpoint_every,
            "cache_tokens_gib": cache_tokens_gib, "seed": seed,
        }
        for k, v in over.items():
            if v is not None:
                setattr(cfg, k, v)
        if caption_fields:
            cfg.caption_fields = tuple(f.strip() for f in caption_fields.split(",") if f.strip())
        if no_caption:
            cfg.caption_weight = 0.0
        store = FeatureStore.open(features)
        q.feature_dim = store.dim
        cfg.validate()
        if overwrite and out.exists():
            shutil.rmtree(out)
        elif (out / "config.json").exists() and not (out / "checkpoint").exists():
            raise InputError(f"{out} already holds a finished alignment; pass --overwrite or another --out")
        if not pairs.exists():
            raise InputError(f"{pairs} does not exist; run `tokenizer-kit mine-pairs` first")
        pair_table = pq.read_table(pairs)
        for c in ("item_a", "item_b"):
            if c not in pair_table.column_names:
                raise InputError(f"{pairs}: pairs lack column {c!r} (columns: {pair_table.column_names}); use mine-pairs output")
        ev_table = pq.read_table(eval_pairs) if eval_pairs is not None else None
        captions = None
        if cfg.caption_weight > 0:
            if catalog is None:
                raise InputError("the caption loss needs --catalog (caption texts); pass it or --no-caption")
            cat = read_catalog(catalog)
            missing = [f for f in cfg.caption_fields if f not in cat.column_names]
            if len(missing) == len(cfg.caption_fields):
                raise InputError(f"{catalog}: none of the caption fields {list(cfg.caption_fields)} is a column ({cat.column_names}); pass --caption-fields")
            recs = {r["item_id"]: r for r in cat.to_pylist()}
            captions = caption_texts([recs.get(i, {}) for i in store.item_ids], cfg.caption_fields)
        info = {
            "features": str(features),
            "pairs": str(pairs),
            "pairs_sha256": sha256_file(pairs),
            "eval_pairs": None if eval_pairs is None else str(eval_pairs),
            "catalog": None if catalog is None else str(catalog),
        }
        is_rank0 = int(os.environ.get("RANK", "0")) == 0
        with progress_bar(enabled=is_rank0) as progress:
            summary = train_alignment(
                store=store, pairs=pair_table, out=out, config=cfg, captions=captions, eval_pairs=ev_table,
                resume=resume, device=device, progress=progress, inputs_info=info,
            )
        if not is_rank0:
            return
        result = {"out": str(out), **summary}
        if fmt == OutputFormat.json:
            emit_json(result)
            return
        out_console.print(f"[bold]alignment[/] -> {out}: {summary['steps_done']} steps, {summary['train_pairs']:,} training pairs")
        ev = summary.get("eval") or {}
        if "recall_aligned" in ev:
            out_console.print(
                f"held-out recall@{ev['k']}: aligned {ev['recall_aligned']:.4f}, raw pooled {ev['recall_raw_pooled']:.4f} ({ev['n_pairs']:,} pairs)"
            )
        if "caption_loss_with_prefix" in ev:
            other = ev.get("caption_loss_other_item_prefix")
            other_s = f", another item's prefix {other:.3f}" if other is not None else ""
            out_console.print(f"caption loss: with M~ prefix {ev['caption_loss_with_prefix']:.3f}, without {ev['caption_loss_without_prefix']:.3f}{other_s}")
