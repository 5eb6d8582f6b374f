"""The per-item verbs (embed-text, embed, assign) on an engine: one function each, for both engines.

A stage calls these with the engine it built once (:func:`~tokenizer_kit.engines.engine_for`);
the domain's per-batch function is the same on both engines (``TextEncoder.encode``,
``alignment.embed_rows``, ``build.encode_batch``, ``indexer.lookup_part``),
and the engine's ``sharded_output`` picks the output's layout: the local engine streams the
batches in this process into the single Parquet file it has always written, the Ray engine
maps them over shards into a directory of Parquet parts with a manifest (the same rows).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .._progress import Progress
from ..errors import InputError
from ._engine import Engine

if TYPE_CHECKING:
    from ..io import EmbeddingSource
    from ._assign import Sharding

__all__ = ["assign_codes", "check_output", "cold_start", "embed_store_items", "embed_text_items"]

PathLike = str | os.PathLike


def check_output(engine: Engine, out: PathLike | None, *, overwrite: bool = True) -> None:
    """The output checked before any input is read: a shard directory (Ray), or one file
    that must not exist unless ``overwrite`` (local)."""
    from ..io import check_output_dir, check_output_file

    if out is None:
        return
    if engine.sharded_output:
        check_output_dir(out, "output directory")
    else:
        check_output_file(out, "output", overwrite=overwrite)


def embed_text_items(engine: Engine, ids: Sequence[Any], texts: Sequence[str], out: PathLike, *, model: str | None, batch_size: int,
                     max_length: int, normalize: bool, device: str | None, shard_size: int, meta: dict[str, Any],
                     source: dict[str, Any], overwrite: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Text embeddings of the items ``ids`` (``texts``) into ``out``; length-sorting windows of ``shard_size``."""
    if engine.sharded_output:
        from ._embed import embed_text_sharded

        return embed_text_sharded(ids, texts, out, engine=engine, model=model, batch_size=batch_size, max_length=max_length,
                                  normalize=normalize, device=device, shard_size=shard_size, meta=meta, source=source,
                                  overwrite=overwrite, progress=progress)
    from ..features import embed_texts
    from ..io import write_embeddings_parquet

    x = embed_texts(texts, model_path=model, batch_size=batch_size, max_length=max_length, normalize=normalize, device=device,
                    sort_window=shard_size, progress=progress)
    write_embeddings_parquet(out, ids, x, metadata=meta)
    return {"out": str(out), "n_items": len(ids), "dim": int(x.shape[1])}


def embed_store_items(engine: Engine, store, alignment: PathLike, out: PathLike, *, pooling: str, batch_size: int,
                      max_tokens: int | None, device: str | None, shard_size: int, overwrite: bool = False,
                      progress: Progress | None = None) -> dict[str, Any]:
    """Aligned embeddings of every item of the feature store ``store`` into ``out``."""
    if engine.sharded_output:
        from ._embed import embed_sharded

        return embed_sharded(store, alignment, out, engine=engine, pooling=pooling, batch_size=batch_size, max_tokens=max_tokens,
                             device=device, shard_size=shard_size, overwrite=overwrite, progress=progress)
    from ..alignment import embed_store

    return embed_store(store, alignment, out, pooling=pooling, batch_size=batch_size, max_tokens=max_tokens, device=device,
                       progress=progress)


def assign_codes(engine: Engine, tok, source: EmbeddingSource, out: PathLike, *, sharding: Sharding,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Codes of every item of ``source`` (no index to cold-start into) into ``out``, batch by
    batch (``build.encode_batch``); the local engine reads ``sharding.batch_size`` rows at
    a time (None: the streaming default) into one file."""
    if engine.sharded_output:
        from ._assign import assign_sharded

        res = assign_sharded(tok, source, out, engine=engine, sharding=sharding, progress=progress)
    else:
        from ..build import StreamingRun, assign_streaming

        run = StreamingRun() if sharding.batch_size is None else StreamingRun(batch_size=sharding.batch_size)
        res = assign_streaming(tok, source.open(), out, run=run, progress=progress)
    res.pop("seconds", None)
    return res


def cold_start(engine: Engine, tok, idx, source: EmbeddingSource, out: PathLike, *, replace: bool, update: bool,
               sharding: Sharding, tokenizer: PathLike, rows: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Cold start of every input item against the index ``idx`` into ``out``: each batch
    through ``indexer.lookup_part`` (in process, or on the workers one part per
    shard), the items to place placed here (``indexer.place_lookups``), the index saved (``update``) before
    ``out`` appears, then the lookup rows written (one file, or one part per shard)."""
    if tok.method == "external":
        raise InputError(f"{tokenizer} is an imported index whose new items come with their codes; assign them with the local engine")
    if idx.policy_obj.needs_vectors:
        raise InputError(f"cold start under the {idx.policy} policy ranks free SIDs by the items' vectors; use the local engine")
    if engine.sharded_output:
        return _cold_start_sharded(engine, tok, idx, source, Path(out), replace=replace, update=update, sharding=sharding,
                                   tokenizer=tokenizer, rows=rows, progress=progress)
    from ..indexer import assign_to_file

    stream = source.open()
    new, summary = assign_to_file(idx, tok, stream, out, replace=replace, batch_size=sharding.batch_size, progress=progress,
                                  save_to=tokenizer, update=update)
    return {"updated": bool(update and new.version != idx.version), **summary, "out": str(out), "lookup_rows": int(stream.n)}


def _cold_start_sharded(engine: Engine, tok, idx, source: EmbeddingSource, out: Path, *, replace: bool, update: bool,
                        sharding: Sharding, tokenizer: PathLike, rows: bool, progress: Progress | None) -> dict[str, Any]:
    """The workers write the lookup parts into a scratch shard directory beside ``out`` (kept
    by a killed run, so a rerun resumes it); the placement runs here."""
    from ..build import check_unique_ids
    from ._assign import AssignParts, assign_sharded

    _check_lookup_dir(out)
    # an ids-only pass before the workers run: a repeated id fails in seconds, as in the local engine
    check_unique_ids(source.open(), spill_dir=out.parent if out.parent.is_dir() else None)
    scratch = out.parent / f".{out.name}.lookups"
    res = assign_sharded(tok, source, scratch, engine=engine, sharding=sharding, parts=AssignParts(lookup=True), progress=progress,
                         summary=False, overwrite=True)
    new, summary = _place_sharded(tok, idx, scratch, out, replace=replace, tokenizer=tokenizer, update=update)
    changed = new.version != idx.version
    # every lookup row in memory only when asked (--print-items): read back from the shards written
    extra = {"lookup": _lookup_rows(out, idx.item_ids.dtype.kind in "iu")} if rows else {"lookup_rows": summary["items"]}
    shutil.rmtree(scratch, ignore_errors=True)
    res = {**res, "out": str(out)}
    res.pop("seconds", None)
    return {**res, "updated": bool(update and changed), **summary, **extra}


def _place_sharded(tok, idx, scratch: Path, out: Path, *, replace: bool, tokenizer: PathLike, update: bool):
    """The driver's part of the sharded cold start in bounded memory: the items to place
    gathered from the lookup parts and placed, the index saved (``update``), then each part
    rewritten as the lookup rows of its shard."""
    from ..indexer import IndexConfig, lookup_columns, place_lookups, write_lookup_rows
    from ..io import sha256_file, write_artifact
    from ._output import SHARDS, read_shard_manifest

    m = read_shard_manifest(scratch)
    parts = [scratch / sh["file"] for sh in m.shards]
    spill = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".scratch", dir=out.parent))
    try:
        new, rnd, placed, summary = place_lookups(idx, tok, parts, spill, replace=replace, config=IndexConfig(policy=idx.policy), update=update)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    if update and new.version != idx.version:
        new.save(tok, tokenizer)
    entries, start = [], 0
    with write_artifact(out, SHARDS, overwrite=True) as w:
        for sh, src in zip(m.shards, parts):
            n = write_lookup_rows(src, w.dir / sh["file"], placed, rnd, idx.item_ids, idx.sid_length, start=start)
            entries.append({**{k: sh[k] for k in ("index", "name", "file", "rows", "first_row", "input_rows")},
                            "sha256": sha256_file(w.dir / sh["file"]), "size": (w.dir / sh["file"]).stat().st_size})
            start += n
        w.fields.update({k: m.data[k] for k in ("config", "tokenizer", "n_rows") if k in m.data}, job="assign",
                        columns=lookup_columns(idx.sid_length),
                        shards=entries)
    return new, summary


def _lookup_rows(out: Path, int_ids: bool) -> list[dict[str, Any]]:
    """The lookup rows of a written shard directory as the in-memory cold start returns them
    (a dict per item; neighbours as ids of the index's type)."""
    import pyarrow.parquet as pq

    t = pq.read_table(out)
    codes = sorted((c for c in t.column_names if c.startswith("code_")), key=lambda c: int(c[5:]))
    conv = int if int_ids else str
    return [{"item_id": r["item_id"], "sid": r["sid"], "codes": [r[c] for c in codes], "status": r["status"],
             "collided": r["collided"], "moved": r["moved"], "nearest": [conv(v) for v in r["nearest"]]} for r in t.to_pylist()]


def _check_lookup_dir(out: Path) -> None:
    """The lookup directory replaces an earlier shard directory, never other files."""
    from ._output import SHARDS

    if out.is_dir() and any(out.iterdir()) and not (out / SHARDS.manifest_name).exists():
        raise InputError(f"output directory {out} holds files but no {SHARDS.manifest_name} of a shard directory; "
                         "choose an empty or new directory for `out`")
